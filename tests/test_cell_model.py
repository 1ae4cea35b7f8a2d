"""The BluePyOpt cell model built from a model configuration, instantiated in real NEURON.

Cells that need no compiled mechanisms (hh, pas) are instantiated in this process; the
example cell's own channels are only named here (loading them needs a fresh process, see
test_mechanisms.py).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bluepyopt import ephys

import science_project as hh
from luigi_emodel import LocalAccessPoint
from luigi_emodel.exceptions import ConfigurationError
from luigi_emodel.schemas.model_configuration import ModelConfiguration
from luigi_emodel.science.cell_model import build_cell_model, check_distribution, replaces_axon

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "configs" / "example"
TINY_CELL = str(hh.DATA / "morphologies" / "tiny_cell.swc")

# The hh test model with a distribution that has a parameter of its own (optimised as a
# MetaParameter of the distribution's scaler).
MODEL_WITH_DISTRIBUTION_PARAMETER: dict[str, Any] = {
    "mechanisms": [{"name": "pas", "location": "alldend"}, {"name": "hh", "location": "somaxon"}],
    "distributions": [{"name": "decay", "function": "math.exp({distance}*{constant})*{value}",
                       "parameters": ["constant"]}],
    "parameters": [
        {"name": "v_init", "value": -65, "location": "global"},
        {"name": "Ra", "value": 100, "location": "all"},
        {"name": "constant", "value": [-0.02, -0.001], "location": "distribution_decay"},
        {"name": "gnabar_hh", "value": [0.05, 0.25], "location": "somaxon"},
        {"name": "g_pas", "value": [1e-5, 2e-4], "location": "alldend", "distribution": "decay"},
    ],
}


@pytest.fixture
def simulator() -> ephys.simulators.NrnSimulator:
    # dt given explicitly: a simulator that reads h.dt fails after any CVODE run.
    return ephys.simulators.NrnSimulator(dt=0.025, cvode_active=False)


@pytest.fixture
def instantiate(simulator: ephys.simulators.NrnSimulator) -> Iterator[Any]:
    """instantiate(cell, values) -> the NEURON cell; every cell is destroyed afterwards."""
    cells: list[Any] = []

    def _instantiate(cell: Any, values: dict[str, float]) -> Any:
        cell.freeze(values)
        cell.instantiate(sim=simulator)
        cells.append(cell)
        return cell.icell

    yield _instantiate
    for cell in cells:
        cell.destroy(sim=simulator)


def example_configuration(root: Path) -> ModelConfiguration:
    """The example cell's legacy params file, read through the access point of a run root."""
    shutil.copytree(EXAMPLE / "mechanisms", root / "mechanisms")
    shutil.copytree(EXAMPLE / "morphologies", root / "morphologies")
    shutil.copytree(EXAMPLE / "config", root / "config")
    (root / "recipes.json").write_text(json.dumps({"example": {
        "morph_path": "morphologies", "morphology": [["simple_cell", "simple_cell.swc"]],
        "params": "config/params/example.json", "features": "config/features/example.json",
        "pipeline_settings": {},
    }}))
    return LocalAccessPoint("example", emodel_dir=root).get_model_configuration()


def test_parameters_are_named_as_final_json_keys(tmp_path: Path) -> None:
    configuration = example_configuration(tmp_path)
    cell = build_cell_model(configuration, "example", str(EXAMPLE / "morphologies/simple_cell.swc"))
    truth = json.loads((EXAMPLE / "ground_truth.json").read_text())["parameters"]
    free = {name for name, param in cell.params.items() if not param.frozen}
    assert free == set(truth)  # the stored models' keys, exactly
    frozen = {name for name, param in cell.params.items() if param.frozen}
    assert frozen == {"v_init", "celsius", "cm.all", "Ra.all", "ena.somatic", "ek.somatic",
                      "ena.axonal", "ek.axonal"}
    assert isinstance(cell.params["celsius"], ephys.parameters.NrnGlobalParameter)
    assert isinstance(cell.params["gNaTxbar_NaTx.axonal"], ephys.parameters.NrnSectionParameter)
    # The exponential distribution: a range parameter scaled by distance from the soma.
    ih = cell.params["gIhxbar_Ihx.alldend"]
    assert isinstance(ih, ephys.parameters.NrnRangeParameter)
    assert isinstance(ih.value_scaler, ephys.parameterscalers.NrnSegmentSomaDistanceScaler)
    assert {loc.seclist_name for loc in ih.locations} == {"apical", "basal"}
    assert sorted(m.suffix for m in cell.mechanisms) == \
        ["Ihx", "Kdrx", "Kdrx", "Kmx", "NaTx", "NaTx", "pas"]


def test_frozen_and_free_parameters(instantiate: Any) -> None:
    configuration = ModelConfiguration.model_validate(hh.MODEL)
    cell = build_cell_model(configuration, "hhfrozen", TINY_CELL)
    assert cell.params["Ra.all"].frozen and cell.params["Ra.all"].value == 100
    assert cell.params["celsius"].frozen and cell.params["celsius"].value == 6.3
    free = cell.params["gnabar_hh.somaxon"]
    assert not free.frozen and free.value is None and list(free.bounds) == [0.05, 0.25]
    assert [n for n, p in cell.params.items() if not p.frozen] == list(hh.TRUE_PARAMETERS)
    icell = instantiate(cell, hh.TRUE_PARAMETERS)
    soma, axon = icell.soma[0], icell.axon[0]
    assert soma.Ra == 100 and soma(0.5).gnabar_hh == pytest.approx(0.12)
    assert axon(0.5).gkbar_hh == pytest.approx(0.036)
    from neuron import h

    assert h.celsius == 6.3


def test_distribution_parameter_changes_dendritic_values(instantiate: Any) -> None:
    configuration = ModelConfiguration.model_validate(MODEL_WITH_DISTRIBUTION_PARAMETER)
    from neuron import h

    observed = {}
    for constant in (-0.001, -0.01):
        cell = build_cell_model(configuration, "hhmeta", TINY_CELL)
        assert isinstance(cell.params["constant.distribution_decay"],
                          ephys.parameters.MetaParameter)
        icell = instantiate(cell, {"constant.distribution_decay": constant,
                                   "gnabar_hh.somaxon": 0.12, "g_pas.alldend": 1e-4})
        dend = icell.dend[0]
        far = dend(0.9)
        distance = h.distance(icell.soma[0](0.5), far)
        assert distance > 50
        # The distribution's formula, at this segment's distance from the soma centre.
        assert far.g_pas == pytest.approx(math.exp(distance * constant) * 1e-4, rel=1e-9)
        observed[constant] = far.g_pas
    assert observed[-0.01] < observed[-0.001] / 1.5


@pytest.mark.parametrize("function, why", [
    ("math.exp({distance}*{constnat})*{value}", "KeyError"),  # a misspelt parameter
    ("math.exp({distance}*0.01))*{value}", "SyntaxError"),
    ("sigmoid({distance})*{value}", "NameError"),
])
def test_bad_distribution_expression(function: str, why: str) -> None:
    model = copy.deepcopy(MODEL_WITH_DISTRIBUTION_PARAMETER)
    model["distributions"][0]["function"] = function
    configuration = ModelConfiguration.model_validate(model)
    with pytest.raises(ConfigurationError, match=r"distributions\['decay'\]\.function") as caught:
        build_cell_model(configuration, "hhbad", TINY_CELL)
    assert why in str(caught.value)
    with pytest.raises(ConfigurationError, match="decay"):
        check_distribution(configuration.distributions[0])


def test_morph_modifiers_empty_keeps_the_original_axon(instantiate: Any) -> None:
    configuration = ModelConfiguration.model_validate(hh.MODEL)
    kept = instantiate(build_cell_model(configuration, "hhkeep", TINY_CELL, morph_modifiers=[]),
                       hh.TRUE_PARAMETERS)
    # tiny_cell.swc's axon: one section from y=-8 to y=-40 um.
    assert len(kept.axon) == 1 and kept.axon[0].L == pytest.approx(32.0, abs=0.5)
    replaced = instantiate(build_cell_model(configuration, "hhstub", TINY_CELL),
                           hh.TRUE_PARAMETERS)
    # BluePyOpt's replacement: two 30 um sections.
    assert len(replaced.axon) == 2
    assert [sec.L for sec in replaced.axon] == [pytest.approx(30.0), pytest.approx(30.0)]
    assert replaces_axon(["bluepyopt_replace_axon"]) and not replaces_axon([])


@pytest.mark.parametrize("modifiers", [["synth_axon"], [["my_modifiers.py", "shrink_axon"]]])
def test_unsupported_morph_modifiers(modifiers: list[Any]) -> None:
    configuration = ModelConfiguration.model_validate(hh.MODEL)
    with pytest.raises(ConfigurationError, match="morph_modifiers") as caught:
        build_cell_model(configuration, "hhmod", TINY_CELL, morph_modifiers=modifiers)
    assert "[]" in str(caught.value)  # says what is supported
