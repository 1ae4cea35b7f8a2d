"""Generated documentation stays current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_current() -> None:
    result = subprocess.run([sys.executable, str(REPO / "docs/make_configuration.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_configuration_reference_lists_every_setting() -> None:
    from luigi_emodel.schemas import PipelineSettings

    text = (REPO / "docs/configuration.md").read_text()
    for name in PipelineSettings.model_fields:
        if name not in ("optimizer", "threshold_based_evaluator"):
            assert f"| `{name}`" in text
    assert "`settings_override`" in text and "`backend`" in text
