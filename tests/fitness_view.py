"""One view of a fitness-calculator configuration, for comparing the reference's with ours.

Imported by ``test_reference_compat.py`` and by ``reference_side.py`` (which runs in the
reference's virtual environment): the standard library only.
"""

from __future__ import annotations

from typing import Any


def fitness_view(config: Any) -> dict[str, Any]:
    """The e-features and protocols of a ``FitnessCalculatorConfiguration`` (the reference's
    or ours) as plain data. The reference keeps recordings as dicts, we as objects."""
    return {
        "efeatures": [
            {"name": f.name, "protocol_name": f.protocol_name, "mean": f.mean,
             "original_std": f.original_std, "std": f.std, "weight": f.weight,
             "efel_settings": f.efel_settings}
            for f in config.efeatures
        ],
        "protocols": [
            {"name": p.name, "stimuli": p.stimuli, "validation": p.validation,
             "protocol_type": p.protocol_type,
             "recordings": [r["name"] if isinstance(r, dict) else r.name
                            for r in p.recordings_from_config]}
            for p in config.protocols
        ],
    }
