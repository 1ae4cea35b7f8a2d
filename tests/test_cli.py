"""The ``luigi-emodel`` console script, run as the installed executable in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from luigi_emodel.schemas import FILE_KINDS
from luigi_emodel.schemas.pipeline_settings import OPTIMISERS

#: The console script installed beside the interpreter running the tests (.venv/bin).
EXECUTABLE = Path(sys.executable).parent / "luigi-emodel"

pytestmark = pytest.mark.skipif(not EXECUTABLE.is_file(),
                                reason=f"console script not installed at {EXECUTABLE}")


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script; never raises on a non-zero exit (the tests check it)."""
    return subprocess.run([str(EXECUTABLE), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120, check=False)


def assert_clean_failure(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit code 2, a one-message error naming ``expected``, no traceback, nothing on stdout."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("luigi-emodel: error: ")
    for text in expected:
        assert text in result.stderr
    assert result.stdout == ""


def test_schema_writes_one_schema_per_file_kind(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "schemas"  # created with its parents
    result = run_cli("schema", out)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{kind}.schema.json" for kind in FILE_KINDS)
    assert result.stdout.split() == [str(out / f"{kind}.schema.json") for kind in FILE_KINDS]
    for kind in FILE_KINDS:
        schema = json.loads((out / f"{kind}.schema.json").read_text())
        assert schema["$schema"].startswith("https://json-schema.org/")
        assert schema["type"] == "object"
        assert isinstance(schema["properties"], dict) and schema["properties"], kind


def test_schema_content_matches_the_models(tmp_path: Path) -> None:
    assert run_cli("schema", "out", "--quiet", cwd=tmp_path).returncode == 0
    out = tmp_path / "out"

    def load(kind: str) -> dict:
        return json.loads((out / f"{kind}.schema.json").read_text())

    recipe = load("recipe")
    # Unknown keys are errors: the schema says so, for editors and validators alike.
    assert recipe["additionalProperties"] is False
    assert {"morphology", "params", "parameters", "features", "pipeline_settings",
            "__comment"} <= set(recipe["properties"])
    assert "morphology" in recipe["required"]
    settings = load("pipeline_settings")
    assert settings["additionalProperties"] is False
    assert settings["properties"]["max_ngen"]["default"] == 100
    assert settings["properties"]["optimiser"]["enum"] == list(OPTIMISERS)
    # final.json entries keep keys written by other tools: the schema must allow them.
    assert load("stored_model")["additionalProperties"] is True
    assert "seed" in load("stored_model")["required"]
    assert load("metadata")["required"] == ["emodel"]
    model = load("model_configuration")
    assert {"mechanisms", "distributions", "parameters"} <= set(model["properties"])
    assert {"efeatures", "protocols"} <= set(load("fitness_calculator_configuration")["properties"])
    assert {"files", "targets"} <= set(load("targets_configuration")["properties"])


def test_schema_rewrites_existing_files(tmp_path: Path) -> None:
    (tmp_path / "recipe.schema.json").write_text("stale")
    assert run_cli("schema", tmp_path, "-q").returncode == 0
    assert json.loads((tmp_path / "recipe.schema.json").read_text())["title"] == "Recipe"


def test_schema_into_a_file_fails_cleanly(tmp_path: Path) -> None:
    target = tmp_path / "a_file"
    target.write_text("keep me")
    assert_clean_failure(run_cli("schema", target), str(target), "not a folder")
    assert target.read_text() == "keep me"
    below = target / "sub"
    assert_clean_failure(run_cli("schema", below), str(below), "cannot create")


def test_schema_output_not_writable_fails_cleanly(tmp_path: Path) -> None:
    # An output file name taken by a folder cannot be written, whoever runs the test.
    (tmp_path / "recipe.schema.json").mkdir()
    assert_clean_failure(run_cli("schema", tmp_path), "recipe.schema.json", "cannot write")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permission bits do not bind root")
def test_schema_read_only_folder_fails_cleanly(tmp_path: Path) -> None:
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert_clean_failure(run_cli("schema", folder), str(folder), "cannot write")
    finally:
        folder.chmod(0o700)


def test_command_line_errors_exit_2() -> None:
    assert_clean_failure(run_cli(), "required")
    assert_clean_failure(run_cli("nope"), "invalid choice")
    assert_clean_failure(run_cli("schema"), "DIR")


def test_help_and_version_exit_0() -> None:
    result = run_cli("--help")
    assert result.returncode == 0 and "schema" in result.stdout
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("luigi-emodel ")


def test_main_returns_the_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from luigi_emodel.cli import main

    assert main(["schema", str(tmp_path), "--quiet"]) == 0
    assert len(list(tmp_path.glob("*.schema.json"))) == len(FILE_KINDS)
    (tmp_path / "file").write_text("")
    assert main(["schema", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err
