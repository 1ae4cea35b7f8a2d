"""A small ground-truth model for the science tests: Hodgkin-Huxley soma and axon, passive
dendrite, on tests/data/morphologies/tiny_cell.swc (NEURON's built-in hh and pas only, so no
compilation is needed).

``make_hh_project`` writes a complete project whose e-feature targets are the features of
the true parameters (simulated here), with a std floor so that scores stay informative.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
EMODEL = "hhcell"

TRUE_PARAMETERS = {
    "gnabar_hh.somaxon": 0.12,
    "gkbar_hh.somaxon": 0.036,
    "g_pas.alldend": 5e-5,
}

MODEL = {
    "mechanisms": [
        {"name": "pas", "location": "alldend"},
        {"name": "hh", "location": "somaxon"},
    ],
    "distributions": [
        {"name": "decay", "function": "math.exp(-{distance}*0.002)*{value}"},
    ],
    "parameters": [
        {"name": "v_init", "value": -65, "location": "global"},
        {"name": "celsius", "value": 6.3, "location": "global"},
        {"name": "cm", "value": 1.0, "location": "all"},
        {"name": "Ra", "value": 100, "location": "all"},
        {"name": "e_pas", "value": -65, "location": "alldend"},
        {"name": "gnabar_hh", "value": [0.05, 0.25], "location": "somaxon"},
        {"name": "gkbar_hh", "value": [0.01, 0.08], "location": "somaxon"},
        {"name": "g_pas", "value": [1e-5, 2e-4], "location": "alldend",
         "distribution": "decay"},
    ],
}

STEPS = {"Step_100": 0.1, "Step_200": 0.2, "Step_300": 0.3}
FEATURES = ["Spikecount", "mean_frequency", "AP_height", "voltage_base",
            "time_to_first_spike", "AP_width"]


def protocols(total: float = 400.0) -> list[dict[str, Any]]:
    return [
        {"name": name,
         "stimuli": [{"delay": 50.0, "amp": amp, "duration": 300.0, "totduration": total,
                      "holding_current": 0.0}],
         "recordings_from_config": [{"type": "CompRecording", "name": f"{name}.soma.v",
                                     "location": "soma", "variable": "v"}],
         "validation": False, "protocol_type": "Protocol", "stochasticity": False}
        for name, amp in STEPS.items()
    ]


def placeholder_features() -> dict[str, Any]:
    return {
        "protocols": protocols(),
        "efeatures": [
            {"efel_feature_name": feature, "protocol_name": name, "recording_name": "soma.v",
             "mean": 0.0, "original_std": 1.0}
            for name in STEPS for feature in FEATURES
        ],
    }


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def make_hh_project(root: Path, features: dict[str, Any] | None = None,
                    **settings: Any) -> Path:
    """Write the project; ``features`` defaults to placeholder targets (means 0)."""
    shutil.copytree(DATA / "morphologies", root / "morphologies", dirs_exist_ok=True)
    write_json(root / "config/params/hh.json", MODEL)
    write_json(root / "config/features/hh.json", features or placeholder_features())
    base_settings = {
        "optimiser": "IBEA", "optimisation_params": {"offspring_size": 8}, "max_ngen": 3,
        "n_model": 1, "validation_threshold": 50.0, "optimisation_timeout": 60.0,
        "plot_optimisation": False, "plot_extraction": False,
    }
    base_settings.update(settings)
    write_json(root / "recipes.json", {EMODEL: {
        "morph_path": "morphologies", "morphology": [["tiny_cell", "tiny_cell.swc"]],
        "params": "config/params/hh.json", "features": "config/features/hh.json",
        "pipeline_settings": base_settings,
    }})
    return root


VALIDATION_PROTOCOL = "Thresh_150"


def with_validation_protocol(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` plus a threshold-based validation protocol (150 % of the threshold current)
    and placeholder targets of every feature on it."""
    config["protocols"].append({
        "name": VALIDATION_PROTOCOL,
        "stimuli": [{"delay": 50.0, "thresh_perc": 150.0, "duration": 300.0,
                     "totduration": 400.0}],
        "recordings_from_config": [{"type": "CompRecording", "location": "soma",
                                    "name": f"{VALIDATION_PROTOCOL}.soma.v", "variable": "v"}],
        "validation": True, "protocol_type": "ThresholdBasedProtocol", "stochasticity": False,
    })
    config["efeatures"] += [
        {"efel_feature_name": name, "protocol_name": VALIDATION_PROTOCOL,
         "recording_name": "soma.v", "mean": 0.0, "original_std": 1.0}
        for name in FEATURES
    ]
    return config


def ground_truth_features(values: dict[str, float | None], std_fraction: float = 0.1,
                          std_floor: float = 0.5,
                          config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Targets whose means are the given feature values (features with no value dropped),
    from ``config`` (default: the placeholder targets)."""
    config = config or placeholder_features()
    efeatures = []
    for feature in config["efeatures"]:
        name = f"{feature['protocol_name']}.soma.v.{feature['efel_feature_name']}"
        value = values.get(name)
        if value is None:
            continue
        efeatures.append({**feature, "mean": value,
                          "original_std": max(abs(value) * std_fraction, std_floor)})
    config["efeatures"] = efeatures
    return config
