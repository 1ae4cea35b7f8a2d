"""Shared fixtures: projects in every supported layout, written into a fresh run root."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent

EMODEL = "cADtest"

SETTINGS: dict[str, Any] = {
    "optimiser": "IBEA",
    "optimisation_params": {"offspring_size": 4},
    "max_ngen": 2,
    "n_model": 2,
    "validation_threshold": 10.0,
    "path_extract_config": "config/extract_config/cADtest.json",
}

PARAMS_NEW: dict[str, Any] = {
    "mechanisms": [
        {"name": "pas", "location": "all"},
        {"name": "nakx", "location": "somaxon"},
        {"name": "leakx", "location": "alldend"},
    ],
    "distributions": [
        {"name": "exp", "function": "math.exp({distance}*0.01)*{value}"},
        {"name": "decay", "function": "math.exp({distance}*{constant})*{value}",
         "parameters": ["constant"]},
    ],
    "parameters": [
        {"name": "v_init", "value": -70, "location": "global"},
        {"name": "celsius", "value": 34, "location": "global"},
        {"name": "constant", "value": [-0.05, -0.001], "location": "distribution_decay"},
        {"name": "cm", "value": 1.0, "location": "all"},
        {"name": "g_pas", "value": [1e-5, 1e-4], "location": "all"},
        {"name": "gnabar_nakx", "value": [0.05, 0.3], "location": "somaxon"},
        {"name": "gkbar_nakx", "value": [0.01, 0.1], "location": "somatic"},
        {"name": "gleakxbar_leakx", "value": [1e-6, 1e-4], "location": "alldend",
         "distribution": "exp"},
    ],
    "morphology": {"name": None, "format": None, "path": None, "seclist_names": None,
                   "secarray_names": None, "section_index": None, "id": None},
    "morph_modifiers": None,
}

PARAMS_LEGACY: dict[str, Any] = {
    "mechanisms": {
        "all": {"mech": ["pas"]},
        "somaxon": {"mech": ["nakx"]},
        "alldend": {"mech": ["leakx"]},
    },
    "distributions": {
        "exp": {"fun": "math.exp({distance}*0.01)*{value}"},
        "decay": {"fun": "math.exp({distance}*{constant})*{value}", "parameters": ["constant"]},
    },
    "parameters": {
        "__comment": "legacy layout: parameters grouped by location",
        "global": [{"name": "v_init", "val": -70}, {"name": "celsius", "val": 34}],
        "distribution_decay": [{"name": "constant", "val": [-0.05, -0.001]}],
        "all": [{"name": "cm", "val": 1.0}, {"name": "g_pas", "val": [1e-5, 1e-4]}],
        "somaxon": [{"name": "gnabar_nakx", "val": [0.05, 0.3]}],
        "somatic": [{"name": "gkbar_nakx", "val": [0.01, 0.1]}],
        "alldend": [{"name": "gleakxbar_leakx", "val": [1e-6, 1e-4], "dist": "exp"}],
    },
}

STEP = {"delay": 100.0, "amp": 0.2, "duration": 400.0, "totduration": 600.0}

FEATURES_NEW: dict[str, Any] = {
    "efeatures": [
        {"efel_feature_name": "Spikecount", "protocol_name": "Step_200",
         "recording_name": "soma.v", "mean": 6.0, "original_std": 1.5,
         "efel_settings": {"strict_stiminterval": True}},
        {"efel_feature_name": "voltage_base", "protocol_name": "Step_200",
         "recording_name": "soma.v", "mean": -70.0, "original_std": 2.0},
        {"efel_feature_name": "Spikecount", "protocol_name": "Step_300",
         "recording_name": "soma.v", "mean": 9.0, "original_std": 2.0},
    ],
    "protocols": [
        {"name": "Step_200", "stimuli": [{**STEP, "holding_current": 0.0}],
         "recordings_from_config": [{"type": "CompRecording", "name": "Step_200.soma.v",
                                     "location": "soma", "variable": "v"}],
         "validation": False, "protocol_type": "Protocol", "stochasticity": False},
        {"name": "Step_300", "stimuli": [{**STEP, "amp": 0.3, "holding_current": 0.0}],
         "recordings_from_config": [{"type": "CompRecording", "name": "Step_300.soma.v",
                                     "location": "soma", "variable": "v"}],
         "validation": False, "protocol_type": "Protocol", "stochasticity": False},
    ],
}

FEATURES_LEGACY: dict[str, Any] = {
    "Step_200": {"soma.v": [{"feature": "Spikecount", "val": [6.0, 1.5]},
                            {"feature": "voltage_base", "val": [-70.0, 2.0]}]},
    "Step_300": {"soma": [{"feature": "Spikecount", "val": [9.0, 2.0]}]},
}

PROTOCOLS_LEGACY: dict[str, Any] = {
    "Step_200": {"type": "StepProtocol",
                 "stimuli": {"step": dict(STEP), "holding": {"delay": 0, "amp": 0.0,
                                                             "duration": 600, "totduration": 600}}},
    "Step_300": {"type": "StepProtocol",
                 "stimuli": {"step": {**STEP, "amp": 0.3}}},
}

TARGETS: dict[str, Any] = {
    "emodel": EMODEL,
    "ttype": None,
    "files": [{"cell_name": "cell1", "filename": "cell1_IDrest_1",
               "filepath": "recordings/cell1_IDrest_1.npz",
               "ecodes": {"IDrest": {"ljp": 14.0}},
               "other_metadata": {"i_unit": "nA", "v_unit": "mV", "t_unit": "ms"}}],
    "targets": [{"efeature": "Spikecount", "protocol": "IDrest", "amplitude": 150,
                 "tolerance": 20, "efeature_name": None, "weight": 1.0, "efel_settings": {}}],
    "protocols_rheobase": ["IDrest"],
    "auto_targets": None,
    "additional_fitness_efeatures": None,
    "additional_fitness_protocols": None,
    "protocols_mapping": None,
}


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def make_project(
    root: Path,
    *,
    params_format: str = "new",
    features_format: str = "new",
    legacy_dir_structure: bool = False,
    settings_in_file: bool = False,
    emodel: str = EMODEL,
) -> Path:
    """Write a complete small project under ``root``; returns the folder of the recipe's paths.

    With ``legacy_dir_structure`` the files go under ``root/<emodel>/`` (emodel names with
    one '_' part map to themselves).
    """
    base = root / "_".join(emodel.split("_")[:2]) if legacy_dir_structure else root
    shutil.copytree(DATA / "mechanisms", root / "mechanisms", dirs_exist_ok=True)
    shutil.copytree(DATA / "morphologies", base / "morphologies", dirs_exist_ok=True)
    write_json(base / "config/params/cell.json",
               PARAMS_NEW if params_format == "new" else PARAMS_LEGACY)
    recipe: dict[str, Any] = {
        "morph_path": "morphologies/",
        "morphology": [["tiny_cell", "tiny_cell.swc"]],
        "params": "config/params/cell.json",
        "features": f"config/features/{emodel}.json",
    }
    if features_format == "new":
        write_json(base / f"config/features/{emodel}.json", FEATURES_NEW)
    else:
        write_json(base / f"config/features/{emodel}.json", FEATURES_LEGACY)
        write_json(base / f"config/protocols/{emodel}.json", PROTOCOLS_LEGACY)
        recipe["protocol"] = f"config/protocols/{emodel}.json"
    settings = dict(SETTINGS)
    settings["path_extract_config"] = f"config/extract_config/{emodel}.json"
    write_json(base / settings["path_extract_config"], {**TARGETS, "emodel": emodel})
    if settings_in_file:
        write_json(base / "config/settings.json", settings)
        recipe["pipeline_settings"] = "config/settings.json"
    else:
        recipe["pipeline_settings"] = settings
    recipes_path = (base / "config/recipes/recipes.json" if legacy_dir_structure
                    else root / "recipes.json")
    existing = json.loads(recipes_path.read_text()) if recipes_path.is_file() else {}
    existing[emodel] = recipe
    write_json(recipes_path, existing)
    return base


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project (new formats) in a fresh run root; returns the run root."""
    make_project(tmp_path)
    return tmp_path


@pytest.fixture
def access_point(project: Path):
    from luigi_emodel import LocalAccessPoint

    return LocalAccessPoint(EMODEL, emodel_dir=project, recipes_path="recipes.json",
                            species="rat", brain_region="SSCX", iteration_tag="it1")


def stored_entry(seed: int, score: float = 1.0, validated: bool | None = None) -> dict[str, Any]:
    """A final.json entry as the optimisation stores it."""
    return {
        "emodel": EMODEL, "seed": seed,
        "parameters": {"g_pas.all": 2e-5, "gnabar_nakx.somaxon": 0.12},
        "fitness": {"Step_200.soma.v.Spikecount": score / 2,
                    "Step_300.soma.v.Spikecount": score / 2},
        "features": {}, "validation_fitness": {}, "validated": validated,
    }
