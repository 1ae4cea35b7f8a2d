"""The schemas of every file kind: names, defaults, spellings, and exact round trips.

Where a behaviour is the reference's (BluePyEModel 1.0.50), the test states it as a fact from
formats.md and, when the reference's own virtual environment is present, checks it against the
real package in a subprocess.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pydantic
import pytest

from conftest import FEATURES_LEGACY, FEATURES_NEW, PARAMS_LEGACY, PARAMS_NEW, PROTOCOLS_LEGACY
from conftest import TARGETS as TARGETS_DATA
from luigi_emodel import ConfigurationError
from luigi_emodel.schemas import (
    FILE_KINDS,
    EModelMetadata,
    EModelWorkflow,
    FitnessCalculatorConfiguration,
    ModelConfiguration,
    PipelineSettings,
    Recipe,
    StoredModel,
    TargetsConfiguration,
    final_key,
    parse_model,
)
from luigi_emodel.schemas.fitness_configuration import from_legacy
from luigi_emodel.schemas.model_configuration import LOCATION_ALIASES, expand_location

#: The reference's python: $LUIGI_EMODEL_REFERENCE_PYTHON, else the venv `make reference` makes.
REFERENCE_PYTHON = Path(os.environ.get(
    "LUIGI_EMODEL_REFERENCE_PYTHON",
    Path.home() / ".cache" / "luigi_emodel" / "ref-venv" / "bin" / "python"))


def json_round_trip(data: Any) -> Any:
    """``data`` written as JSON text and read back, as a file would be."""
    return json.loads(json.dumps(data))


# -- the reference, queried once per session ---------------------------------------------------

#: Metadata cases for as_string, compared with the reference: (metadata, seed, use_allen).
AS_STRING_CASES: list[tuple[dict[str, Any], Any, bool]] = [
    ({"emodel": "L5PC", "etype": "cADpyr", "mtype": "L5TPC:A", "species": "rat",
      "brain_region": "SSCX", "iteration_tag": "abc"}, 1, True),
    ({"emodel": "cADpyr", "etype": "cAD", "brain_region": "SSCX", "iteration_tag": "test"}, 7, True),
    ({"emodel": "m", "ttype": "t 1", "mtype": "L5_TPC:A", "species": "mouse",
      "brain_region": "Somatosensory/L5", "iteration_tag": "abc", "allen_notation": "SS1"},
     None, True),
    ({"emodel": "m", "brain_region": "SSCX", "allen_notation": "SS1"}, 0, False),
    ({"emodel": "m", "etype": "", "synapse_class": "EXC", "iteration_tag": "v1.2"}, "None", True),
    ({"emodel": "m", "etype": "None", "species": "rat"}, 12, True),
]

_REFERENCE_SCRIPT = r"""
import inspect, json, sys
from bluepyemodel.emodel_pipeline.emodel_settings import EModelPipelineSettings
from bluepyemodel.emodel_pipeline.emodel_metadata import EModelMetadata

request = json.load(sys.stdin)
out = {
    "settings": EModelPipelineSettings().as_dict(),
    "init_params": [p for p in inspect.signature(EModelPipelineSettings.__init__).parameters
                    if p != "self"],
    "offspring": {o: EModelPipelineSettings(optimiser=o).optimisation_params
                  for o in ("IBEA", "SO-CMA", "MO-CMA")},
    "validation_protocols": EModelPipelineSettings(
        validation_protocols={"IDrest": [150, 250], "IV": [-40]}).validation_protocols,
    # What the reference makes of settings we wrote.
    "reloaded": [EModelPipelineSettings(**s).as_dict() for s in request["ours"]],
    "as_string": [EModelMetadata(**m).as_string(seed=s, use_allen_notation=a)
                  for m, s, a in request["as_string"]],
}
json.dump(out, sys.stdout)
"""

OUR_SETTINGS_FOR_REFERENCE = [
    {},
    {"optimiser": "SO-CMA", "max_ngen": 30, "validation_protocols": ["IDrest_150"],
     "efel_settings": {"Threshold": -20.0}, "neuron_dt": 0.025, "n_model": 5},
]


@pytest.fixture(scope="session")
def reference() -> dict[str, Any]:
    """Answers of the real bluepyemodel 1.0.50, or a skip when its environment is absent."""
    if not REFERENCE_PYTHON.is_file():
        pytest.skip(f"reference environment not found at {REFERENCE_PYTHON}")
    request = {
        "ours": [PipelineSettings.model_validate(s).as_dict() for s in OUR_SETTINGS_FOR_REFERENCE],
        "as_string": AS_STRING_CASES,
    }
    result = subprocess.run(
        [str(REFERENCE_PYTHON), "-c", _REFERENCE_SCRIPT], input=json.dumps(request),
        capture_output=True, text=True, timeout=300, check=False,
        # Its own site-packages only: nothing of ours may leak into the reference's imports.
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")})
    if result.returncode != 0:
        pytest.skip(f"reference package unusable: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout)


# -- metadata ----------------------------------------------------------------------------------


def test_as_string_is_the_formats_md_example() -> None:
    metadata = EModelMetadata(emodel="L5PC", etype="cADpyr", mtype="L5TPC:A", species="rat",
                              brain_region="SSCX", iteration_tag="abc")
    assert metadata.as_string(seed=1) == (
        "emodel=L5PC__etype=cADpyr__mtype=L5TPC_A__species=rat__brain_region=SSCX__"
        "iteration=abc__seed=1")


def test_as_string_key_order_and_replacements() -> None:
    metadata = EModelMetadata(
        emodel="e", etype="et 1", ttype="tt:1", mtype="mt/1", species="sp", brain_region="br",
        iteration_tag="it", synapse_class="EXC")
    # Fixed key order whatever the construction order; synapse_class never appears.
    assert metadata.as_string(seed=5) == (
        "emodel=e__etype=et_1__ttype=tt_1__mtype=mt1__species=sp__brain_region=br__iteration=it"
        "__seed=5")
    reordered = EModelMetadata.model_validate(
        dict(reversed(list(metadata.model_dump().items()))))
    assert reordered.as_string(seed=5) == metadata.as_string(seed=5)


def test_as_string_skips_falsy_values_and_keeps_seed_zero() -> None:
    metadata = EModelMetadata(emodel="e", etype="", ttype=None, species="rat")
    assert metadata.as_string() == "emodel=e__species=rat"
    assert metadata.as_string(seed=0) == "emodel=e__species=rat__seed=0"
    assert metadata.as_string(seed=None) == metadata.as_string(seed="None") == metadata.as_string()


def test_as_string_allen_notation_replaces_brain_region() -> None:
    metadata = EModelMetadata(emodel="e", brain_region="SSCX", allen_notation="SS1")
    assert metadata.as_string(seed=2) == "emodel=e__brain_region=SS1__seed=2"
    assert metadata.as_string(seed=2, use_allen_notation=False) == (
        "emodel=e__brain_region=SSCX__seed=2")
    assert metadata.as_dict()["brain_region"] == "SSCX"  # stored under its own name


@pytest.mark.reference
def test_as_string_matches_the_reference(reference: dict[str, Any]) -> None:
    ours = [EModelMetadata.model_validate(m).as_string(seed=s, use_allen_notation=a)
            for m, s, a in AS_STRING_CASES]
    assert ours == reference["as_string"]


@pytest.mark.parametrize("key", ["etype", "ttype", "mtype", "species", "brain_region",
                                 "iteration_tag", "synapse_class"])
def test_none_string_means_none(key: str) -> None:
    assert getattr(EModelMetadata.model_validate({"emodel": "e", key: "None"}), key) is None


@pytest.mark.parametrize("key", ["etype", "ttype", "mtype", "brain_region"])
def test_double_underscore_spells_a_space(key: str) -> None:
    metadata = EModelMetadata.model_validate({"emodel": "e", key: "Layer__5__pyr"})
    assert getattr(metadata, key) == "Layer 5 pyr"
    assert f"={'Layer_5_pyr'}" in metadata.as_string()


def test_metadata_as_dict_and_iteration_alias() -> None:
    metadata = EModelMetadata.model_validate({"emodel": "e", "iteration": "v2"})
    assert metadata.iteration_tag == metadata.iteration == "v2"
    assert list(metadata.as_dict()) == ["emodel", "etype", "ttype", "mtype", "species",
                                        "brain_region", "iteration", "synapse_class"]
    assert metadata.filters() == {"emodel": "e", "iteration": "v2"}


@pytest.mark.parametrize("name", ["L5PC", "cADpyr_L5TPC_1", "a", "A_", "x9_Y"])
def test_valid_neuron_names(name: str) -> None:
    assert EModelMetadata(emodel=name).emodel == name


@pytest.mark.parametrize("name", ["1abc", "a-b", "_a", "", "a b", "a.b", "../a", "é", "a/b",
                                  "a" * 101])
def test_invalid_neuron_names(name: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        EModelMetadata(emodel=name)
    with pytest.raises(ConfigurationError, match=r"^cli: emodel: "):
        parse_model(EModelMetadata, {"emodel": name}, "cli")


@pytest.mark.parametrize("tag", ["..", ".", ".hidden", "a/b", "a\\b", "a b", "t" * 101])
def test_invalid_iteration_tags(tag: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^cli: iteration_tag: "):
        parse_model(EModelMetadata, {"emodel": "e", "iteration_tag": tag}, "cli")


def test_valid_iteration_tags() -> None:
    for tag in ("abc1234", "v1.2", "2024-01-01", "a+b", "_x"):
        assert EModelMetadata(emodel="e", iteration_tag=tag).iteration_tag == tag


# -- pipeline settings -------------------------------------------------------------------------

#: Every setting of the reference with its default (bluepyemodel 1.0.50, after its own
#: derivations: efel_settings, optimisation_params, validation_protocols, plot settings).
REFERENCE_DEFAULTS: dict[str, Any] = {
    "extraction_reader": None, "extraction_threshold_value_save": 1, "plot_extraction": True,
    "extract_absolute_amplitudes": False, "pickle_cells_extraction": False,
    "efel_settings": {"interp_step": 0.025, "strict_stiminterval": True},
    "path_extract_config": None, "rheobase_strategy_extraction": "absolute",
    "rheobase_settings_extraction": None, "interpolate_RMP_extraction": False,
    "default_std_value": 1e-3, "bound_max_std": False, "minimum_protocol_delay": 0.0,
    "current_precision": 0.01, "max_threshold_voltage": -30, "threshold_efeature_std": None,
    "max_depth_holding_search": 7, "max_depth_threshold_search": 10, "spikecount_timeout": 50,
    "stochasticity": False, "neuron_dt": None, "cvode_minstep": 0.0, "use_params_for_seed": True,
    "start_from_emodel": None, "optimisation_timeout": 600.0, "optimiser": "IBEA",
    "optimisation_params": {"offspring_size": 100}, "max_ngen": 100,
    "optimisation_checkpoint_period": None, "use_stagnation_criterion": True,
    "compile_mechanisms": False, "name_Rin_protocol": None, "name_rmp_protocol": None,
    "strict_holding_bounds": True, "validation_threshold": 5.0,
    "validation_function": "max_score", "validation_protocols": [], "n_model": 3,
    "optimisation_batch_size": 5, "max_n_batch": 3, "name_gene_map": None,
    "plot_optimisation_progress": True, "plot_distributions": True, "plot_scores": True,
    "plot_traces": True, "plot_thumbnail": True, "plot_dendritic_ISI_CV": True,
    "plot_dendritic_rheobase": True, "plot_currentscape": True, "currentscape_config": None,
    "plot_parameter_evolution": True, "plot_bAP_EPSP": False, "plot_IV_curves": False,
    "plot_FI_curve_comparison": False, "plot_traces_comparison": False,
    "run_plot_custom_sinspec": False, "IV_curve_prot_name": "iv", "FI_curve_prot_name": "idrest",
    "plot_phase_plot": False,
    "phase_plot_settings": {"prot_names": ["idrest"], "amplitude": 150, "amp_window": 1.5,
                            "relative_amp": True},
    "sinespec_settings": {"amp": 0.05, "threshold_based": False},
    "custom_bluepyefe_cells_pklpath": None, "custom_bluepyefe_protocols_pklpath": None,
    "save_recordings": False, "morph_modifiers": None, "files_for_extraction": None,
    "targets": None, "protocols_rheobase": None, "auto_targets": None,
    "auto_targets_presets": None, "use_ProbAMPANMDA_EMS": False,
}

#: The settings formats.md lists, with their defaults (ours included: max_score).
FORMATS_MD_DEFAULTS: dict[str, Any] = {
    "optimiser": "IBEA", "optimisation_params": {"offspring_size": 100}, "max_ngen": 100,
    "optimisation_timeout": 600.0, "optimisation_checkpoint_period": None,
    "use_stagnation_criterion": True, "validation_function": "max_score",
    "validation_threshold": 5.0, "validation_protocols": [], "name_rmp_protocol": None,
    "name_Rin_protocol": None, "n_model": 3, "optimisation_batch_size": 5, "max_n_batch": 3,
    "compile_mechanisms": False, "path_extract_config": None,
    "efel_settings": {"interp_step": 0.025, "strict_stiminterval": True},
    "extract_absolute_amplitudes": False, "default_std_value": 1e-3,
    "threshold_efeature_std": None, "start_from_emodel": None, "morph_modifiers": None,
    "neuron_dt": None, "stochasticity": False, "max_score": 250.0,
}


def test_settings_defaults_of_formats_md() -> None:
    settings = PipelineSettings()
    for name, default in FORMATS_MD_DEFAULTS.items():
        assert getattr(settings, name) == default, name
    assert settings.offspring_size == 100


def test_settings_names_and_defaults_of_the_reference() -> None:
    written = PipelineSettings().as_dict()
    assert set(REFERENCE_DEFAULTS) <= set(written)
    for name, default in REFERENCE_DEFAULTS.items():
        assert written[name] == default, name
    # Ours on top: only the reference's legacy plot flag (which it accepts); max_score is
    # written only when set, so a recipe we write with defaults loads in the reference.
    assert set(written) - set(REFERENCE_DEFAULTS) == {"plot_optimisation"}
    assert PipelineSettings(max_score=100).as_dict()["max_score"] == 100


@pytest.mark.reference
def test_settings_match_the_installed_reference(reference: dict[str, Any]) -> None:
    ours = PipelineSettings().as_dict()
    theirs = reference["settings"]
    assert set(theirs) <= set(ours)
    assert {k: ours[k] for k in theirs} == theirs
    # Everything we write is a constructor argument of the reference ...
    assert set(ours) <= set(reference["init_params"])
    # ... and the reference reads our settings back to the same values.
    for settings, reloaded in zip(OUR_SETTINGS_FOR_REFERENCE, reference["reloaded"]):
        ours = PipelineSettings.model_validate(settings).as_dict()
        assert {k: ours[k] for k in reloaded} == reloaded
    assert reference["offspring"] == {
        o: PipelineSettings(optimiser=o).optimisation_params for o in ("IBEA", "SO-CMA", "MO-CMA")}
    assert reference["validation_protocols"] == PipelineSettings.model_validate(
        {"validation_protocols": {"IDrest": [150, 250], "IV": [-40]}}).validation_protocols


@pytest.mark.parametrize(("optimiser", "size"), [("IBEA", 100), ("SO-CMA", 20), ("MO-CMA", 20)])
def test_offspring_size_depends_on_optimiser(optimiser: str, size: int) -> None:
    settings = PipelineSettings(optimiser=optimiser)
    assert settings.optimisation_params == {"offspring_size": size}
    assert settings.offspring_size == size
    # An explicit value wins, and the old spelling "optimizer" is read.
    explicit = PipelineSettings.model_validate(
        {"optimizer": optimiser, "optimisation_params": {"offspring_size": 7}})
    assert explicit.optimiser == optimiser and explicit.offspring_size == 7
    assert "optimizer" not in explicit.as_dict()


def test_validation_protocols_forms() -> None:
    as_dict = PipelineSettings.model_validate(
        {"validation_protocols": {"IDrest": [150, 250], "IV": [-40]}})
    assert as_dict.validation_protocols == ["IDrest_150", "IDrest_250", "IV_-40"]
    assert PipelineSettings.model_validate({"validation_protocols": None}).validation_protocols == []
    assert PipelineSettings(validation_protocols=["APWaveform_280"]).validation_protocols == [
        "APWaveform_280"]


def test_settings_none_means_default() -> None:
    settings = PipelineSettings.model_validate(
        {"efel_settings": None, "phase_plot_settings": None, "sinespec_settings": None})
    assert settings == PipelineSettings()


@pytest.mark.parametrize("function", ["max_score", "mean_score", ["checks.py", "my_check"]])
def test_validation_function_forms(function: Any) -> None:
    assert PipelineSettings(validation_function=function).validation_function == function


def test_absolute_amplitudes_drop_threshold_protocols(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        settings = PipelineSettings(extract_absolute_amplitudes=True, name_rmp_protocol="IV_0",
                                    name_Rin_protocol="IV_-20")
    assert settings.name_rmp_protocol is None and settings.name_Rin_protocol is None
    assert "extract_absolute_amplitudes" in caplog.text


def test_settings_round_trip_and_unknown_keys() -> None:
    settings = PipelineSettings(optimiser="MO-CMA", max_ngen=7, validation_protocols=["a_1"],
                                stochasticity=["IDrest_150"], max_score=100.0)
    again = PipelineSettings.model_validate(json_round_trip(settings.as_dict()))
    assert again == settings and again.as_dict() == settings.as_dict()
    with pytest.raises(pydantic.ValidationError, match="max_gen"):
        PipelineSettings.model_validate({"max_gen": 3})


# -- recipes -----------------------------------------------------------------------------------


def test_recipe_spellings_and_round_trip() -> None:
    recipe = Recipe.model_validate({"morphology": "cell.asc", "parameters": "p.json",
                                    "__comment": "note", "pipeline_settings": "s.json"})
    assert recipe.params_path == "p.json" and recipe.params_key == "parameters"
    assert recipe.morph_path == "morphology"  # the reference's default folder
    assert recipe.comment == "note"
    listed = Recipe.model_validate({"morphology": [["x", "x.h5"], ["c", "c.swc"]],
                                    "params": "p.json"})
    assert listed.morphology_file == "c.swc" and listed.params_key == "params"
    dumped = json_round_trip(listed.model_dump(by_alias=True, exclude_none=True))
    assert Recipe.model_validate(dumped) == listed


# -- model configuration -----------------------------------------------------------------------


def test_model_configuration_legacy_equals_new() -> None:
    legacy = ModelConfiguration.model_validate(copy.deepcopy(PARAMS_LEGACY))
    new = ModelConfiguration.model_validate(copy.deepcopy(PARAMS_NEW))
    assert legacy == new
    by_name = {p.full_name: p for p in legacy.parameters}
    assert by_name["gleakxbar_leakx.alldend"].distribution == "exp"
    assert by_name["g_pas.all"].mechanism == "pas"
    # Globals are keyed by their bare name (as BluePyOpt names them in final.json).
    assert by_name["cm.all"].mechanism is None and by_name["v_init"].mechanism is None
    assert by_name["v_init"].value == -70.0 and not by_name["v_init"].is_free
    assert by_name["g_pas.all"].value == (1e-5, 1e-4) and by_name["g_pas.all"].is_free


@pytest.mark.parametrize("source", [PARAMS_LEGACY, PARAMS_NEW], ids=["legacy", "new"])
def test_model_configuration_round_trip(source: dict[str, Any]) -> None:
    config = ModelConfiguration.model_validate(copy.deepcopy(source))
    written = json_round_trip(config.as_dict())
    assert isinstance(written["parameters"], list)  # always written in the new format
    again = ModelConfiguration.model_validate(written)
    assert again == config
    assert again.as_dict() == written
    # The distribution survives, for us and for the reference (which writes "distribution"
    # but reads "dist").
    assert {"name": "gleakxbar_leakx", "value": [1e-6, 1e-4], "location": "alldend",
            "distribution": "exp", "dist": "exp", "mechanism": "leakx"} in written["parameters"]
    # The implicit uniform is declared (the reference refuses a list without it) ...
    assert written["distributions"][0] == {"name": "uniform", "function": None}
    # ... and not read back as a declared distribution.
    assert [d.name for d in again.distributions] == ["exp", "decay"]


def test_distribution_spellings_dist_and_distribution() -> None:
    base = copy.deepcopy(PARAMS_NEW)
    spelt_dist = copy.deepcopy(base)
    entry = spelt_dist["parameters"][7]
    entry["dist"] = entry.pop("distribution")
    assert ModelConfiguration.model_validate(spelt_dist) == ModelConfiguration.model_validate(base)
    # "constant" and None are the reference's names of uniform.
    for uniform in ("constant", None):
        data = copy.deepcopy(base)
        data["parameters"][4]["distribution"] = uniform
        assert ModelConfiguration.model_validate(data).parameters[4].distribution == "uniform"


def test_distributions_keep_parameters_and_soma_ref_location() -> None:
    legacy = copy.deepcopy(PARAMS_LEGACY)
    legacy["distributions"]["decay"]["soma_ref_location"] = 0.0
    legacy["distributions"]["exp"]["soma_ref_location"] = 0.3
    config = ModelConfiguration.model_validate(legacy)
    distributions = {d.name: d for d in config.distributions}
    # The reference puts a legacy soma_ref_location into morphology_dependent_parameters.
    assert distributions["decay"].soma_ref_location == 0.0
    assert distributions["exp"].soma_ref_location == 0.3
    assert distributions["decay"].parameters == ["constant"]
    assert distributions["exp"].morphology_dependent_parameters == []
    written = json_round_trip(config.as_dict())
    by_name = {d["name"]: d for d in written["distributions"]}
    assert by_name["decay"] == {
        "name": "decay", "function": "math.exp({distance}*{constant})*{value}",
        "soma_ref_location": 0.0, "parameters": ["constant"]}
    assert by_name["exp"]["soma_ref_location"] == 0.3
    assert ModelConfiguration.model_validate(written) == config
    # The reference's own files carry soma_ref_location in morphology_dependent_parameters.
    misplaced = {**by_name["exp"], "morphology_dependent_parameters": 0.3}
    del misplaced["soma_ref_location"]
    legacy["distributions"]["exp"] = misplaced
    assert ModelConfiguration.model_validate(legacy) == config
    assert config.distribution("uniform").function is None
    with pytest.raises(KeyError):
        config.distribution("sigmoid")


def test_model_configuration_value_forms() -> None:
    data = copy.deepcopy(PARAMS_NEW)
    data["parameters"][3]["value"] = [1.5]  # a one-element list is a frozen value
    data["parameters"][4]["value"] = [1e-5, 1e-5]  # equal bounds are allowed
    config = ModelConfiguration.model_validate(data)
    assert config.parameters[3].value == 1.5 and not config.parameters[3].is_free
    assert config.parameters[4].value == (1e-5, 1e-5)
    for bad in (True, [1, 2, 3], [], None, {"low": 1}):
        data["parameters"][4]["value"] = bad
        with pytest.raises(ConfigurationError, match=r"^p\.json: parameters\[4\]\.value: "):
            parse_model(ModelConfiguration, data, "p.json")


# -- mechanism suffix and locations ------------------------------------------------------------


def _config(mechanisms: list[tuple[str, str]], parameters: list[dict[str, Any]],
            context: dict[str, Any] | None = None) -> ModelConfiguration:
    return parse_model(ModelConfiguration, {
        "mechanisms": [{"name": n, "location": loc} for n, loc in mechanisms],
        "parameters": parameters,
    }, "p.json", context=context)


@pytest.mark.parametrize("order", [["Ca_HVA", "Ca_HVA2"], ["Ca_HVA2", "Ca_HVA"]])
def test_mechanism_by_exact_suffix(order: list[str]) -> None:
    config = _config([(m, "somatic") for m in order], [
        {"name": "gCa_HVAbar_Ca_HVA", "value": [0, 1e-3], "location": "somatic"},
        {"name": "gCa_HVA2bar_Ca_HVA2", "value": [0, 1e-3], "location": "somatic"},
    ])
    assert [p.mechanism for p in config.parameters] == ["Ca_HVA", "Ca_HVA2"]


def test_mechanism_suffix_is_not_a_substring_match() -> None:
    # With only Ca_HVA inserted, a Ca_HVA2 parameter is not Ca_HVA's (the reference's
    # substring guess would take it).
    with pytest.raises(ConfigurationError, match=r"parameters\[0\]\.name: no inserted mechanism "
                                                 r"owns 'gCa_HVA2bar_Ca_HVA2'"):
        _config([("Ca_HVA", "somatic")],
                [{"name": "gCa_HVA2bar_Ca_HVA2", "value": [0, 1], "location": "somatic"}])


def test_mechanism_given_explicitly_and_section_parameters() -> None:
    config = _config([("pas", "all"), ("K_Tst", "somatic"), ("K_T", "somatic")], [
        {"name": "gK_Tstbar_K_Tst", "value": [0, 1], "location": "somatic"},
        {"name": "gK_Tbar_K_T", "value": [0, 1], "location": "somatic"},
        {"name": "e_pas", "value": -75, "location": "all"},
        {"name": "g", "value": 1e-5, "location": "all", "mechanism": "pas"},
        {"name": "cm", "value": 2, "location": "somatic"},
        {"name": "Ra", "value": 100, "location": "all"},
        {"name": "ek", "value": -85, "location": "somatic"},
        {"name": "celsius", "value": 34, "location": "global"},
    ])
    assert [p.mechanism for p in config.parameters] == [
        "K_Tst", "K_T", "pas", "pas", None, None, None, None]


def test_location_aliases_are_the_reference_ones() -> None:
    assert expand_location("alldend") == {"apical", "basal"}
    assert expand_location("somadend") == expand_location("allnoaxon") == {
        "apical", "basal", "somatic"}
    assert expand_location("somaxon") == {"axonal", "somatic"}
    assert expand_location("allact") == {"apical", "basal", "somatic", "axonal"}
    assert expand_location("all") >= expand_location("allact")
    assert expand_location("somatic") == {"somatic"}
    assert set(LOCATION_ALIASES) == {"all", "alldend", "somadend", "allnoaxon", "somaxon",
                                     "allact"}


@pytest.mark.parametrize(("mechanism_at", "parameter_at", "ok"), [
    ("all", "somatic", True), ("all", "alldend", True), ("allact", "somadend", True),
    ("somadend", "allnoaxon", True), ("somaxon", "axonal", True), ("alldend", "basal", True),
    ("alldend", "somadend", False), ("somatic", "somaxon", False), ("basal", "alldend", False),
])
def test_parameter_needs_its_mechanism_at_every_covered_location(
        mechanism_at: str, parameter_at: str, ok: bool) -> None:
    parameters = [{"name": "gbar_chan", "value": [0, 1], "location": parameter_at}]
    if ok:
        assert _config([("chan", mechanism_at)], parameters).parameters[0].mechanism == "chan"
    else:
        with pytest.raises(ConfigurationError, match=r"parameters\[0\]: 'gbar_chan' needs"):
            _config([("chan", mechanism_at)], parameters)


def test_extra_locations_from_the_recipe() -> None:
    parameters = [{"name": "gbar_chan", "value": [0, 1], "location": "axon_initial_segment"}]
    with pytest.raises(ConfigurationError, match="unknown location 'axon_initial_segment'"):
        _config([("chan", "all")], parameters)
    # A seclist name of the recipe becomes a location; multiloc_map defines new aliases.
    config = _config([("chan", "axon_initial_segment")], parameters,
                     context={"locations": ["axon_initial_segment"]})
    assert config.parameters[0].mechanism == "chan"
    config = _config([("chan", "dends")],
                     [{"name": "gbar_chan", "value": [0, 1], "location": "basal"}],
                     context={"multiloc_map": {"dends": ["basal", "apical"]}})
    assert config.parameters[0].mechanism == "chan"


# -- fitness-calculator configuration ----------------------------------------------------------

OBJECTIVES = ["Step_200.soma.v.Spikecount", "Step_200.soma.v.voltage_base",
              "Step_300.soma.v.Spikecount"]


def test_fitness_configuration_new_round_trip() -> None:
    config = FitnessCalculatorConfiguration.model_validate(copy.deepcopy(FEATURES_NEW))
    assert config.objective_names == OBJECTIVES
    written = json_round_trip(config.as_dict())
    assert list(written) == ["efeatures", "protocols"]
    # Key order of the reference's efeature and protocol dicts.
    assert list(written["efeatures"][0]) == [
        "efel_feature_name", "protocol_name", "recording_name", "threshold_efeature_std",
        "default_std_value", "mean", "original_std", "sample_size", "efeature_name", "weight",
        "efel_settings"]
    assert list(written["protocols"][0]) == [
        "name", "stimuli", "recordings_from_config", "validation", "protocol_type",
        "stochasticity"]
    again = FitnessCalculatorConfiguration.model_validate(written)
    assert again == config and again.as_dict() == written
    assert not config.is_threshold_based


def test_fitness_configuration_from_legacy() -> None:
    data = from_legacy(copy.deepcopy(FEATURES_LEGACY), copy.deepcopy(PROTOCOLS_LEGACY),
                       validation_protocols=["Step_300"])
    config = FitnessCalculatorConfiguration.model_validate(data)
    assert config.objective_names == OBJECTIVES  # legacy "soma" is the recording "soma.v"
    protocols = {p.name: p for p in config.protocols}
    assert protocols["Step_200"].stimuli[0]["holding_current"] == 0.0
    assert protocols["Step_300"].stimuli[0]["holding_current"] is None  # no holding stimulus
    assert protocols["Step_300"].validation and not protocols["Step_200"].validation
    assert {p.protocol_type for p in config.protocols} == {"Protocol"}
    assert protocols["Step_200"].recordings_from_config[0].name == "Step_200.soma.v"
    spikecount = config.efeatures[0]
    assert (spikecount.mean, spikecount.original_std, spikecount.efel_settings) == (6.0, 1.5, {})
    written = json_round_trip(config.as_dict())
    assert FitnessCalculatorConfiguration.model_validate(written) == config


def test_legacy_pre_protocols_and_threshold_type() -> None:
    features = {
        "RMP": {"soma.v": [{"feature": "voltage_base", "val": [-72.0, 1.0]},
                           {"feature": "Spikecount", "val": [0.0, 0.1]},
                           {"feature": "AP_amplitude", "val": [1.0, 1.0]}]},
        "Rin": {"soma.v": [{"feature": "ohmic_input_resistance_vb_ssse", "val": [100.0, 5.0]},
                           {"feature": "voltage_base", "val": [-80.0, 1.0]}]},
        "RinHoldCurrent": {"soma.v": [{"feature": "bpo_holding_current", "val": [-0.1, 0.01]}]},
        "Threshold": {"soma.v": [{"feature": "bpo_threshold_current", "val": [0.3, 0.03]}]},
        "IDrest_150": {"soma.v": [{"feature": "mean_frequency", "val": [10.0, 2.0],
                                   "efeature_name": "freq"}]},
    }
    protocols = {
        "RMP": {"type": "RMPProtocol", "stimuli": {"step": STEP_ZERO}},
        "IDrest_150": {"type": "StepThresholdProtocol",
                       "stimuli": {"step": {"delay": 700, "thresh_perc": 150, "duration": 2000,
                                            "totduration": 3000},
                                   "holding": {"amp": -0.02}}},
    }
    config = FitnessCalculatorConfiguration.model_validate(from_legacy(features, protocols))
    assert config.objective_names == [
        "RMPProtocol.soma.v.steady_state_voltage_stimend", "RMPProtocol.soma.v.Spikecount",
        "RinProtocol.soma.v.ohmic_input_resistance_vb_ssse",
        "SearchHoldingCurrent.soma.v.steady_state_voltage_stimend",
        "SearchHoldingCurrent.soma.v.bpo_holding_current",
        "SearchThresholdCurrent.soma.v.bpo_threshold_current",
        "IDrest_150.soma.v.freq",  # efeature_name wins over the eFEL name
    ]
    assert [p.name for p in config.protocols] == ["IDrest_150"]  # pre-protocols are implicit
    assert config.is_threshold_based


STEP_ZERO = {"delay": 0, "amp": 0, "duration": 500, "totduration": 500}


def test_efeature_std_rules() -> None:
    def feature(**values: Any) -> Any:
        return FitnessCalculatorConfiguration.model_validate({"efeatures": [{
            "efel_feature_name": "f", "protocol_name": "RMPProtocol", "recording_name": "soma.v",
            **values}]}).efeatures[0]

    assert feature(mean=10.0, original_std=2.0).std == 2.0
    assert feature(mean=10.0, std=3.0).original_std == 3.0  # the old spelling of original_std
    assert feature(mean=10.0, original_std=0.1, threshold_efeature_std=0.05).std == 0.5
    assert feature(mean=0.0, original_std=0.0, threshold_efeature_std=0.05).std == 0.05
    assert feature(mean=10.0, original_std=0.0).std == 1e-3  # never zero
    assert feature(mean=1.0, recording_name={"": "soma.v"}).name == "RMPProtocol.soma.v.f"


# -- targets, stored models, workflow ----------------------------------------------------------


def test_targets_configuration_round_trip() -> None:
    config = TargetsConfiguration.model_validate(copy.deepcopy(TARGETS_DATA))
    written = json_round_trip(config.as_dict())
    assert list(written)[:2] == ["emodel", "ttype"]
    assert written == {**TARGETS_DATA, "files": [
        {**TARGETS_DATA["files"][0], "resource_id": None, "species": None, "brain_region": None,
         "etype": None, "id": None}]}
    assert TargetsConfiguration.model_validate(written) == config
    assert config.protocols == ["IDrest"]
    nulls = TargetsConfiguration.model_validate({"files": None, "targets": None,
                                                 "protocols_rheobase": None})
    assert nulls.files == [] and nulls.targets == [] and nulls.protocols_rheobase == []


REFERENCE_ENTRY_KEYS = ["emodel", "etype", "ttype", "mtype", "species", "brain_region",
                        "iteration", "synapse_class", "allen_notation", "score", "parameters",
                        "fitness", "features", "validation_fitness", "validated", "seed", "pdfs"]


def test_stored_model_legacy_spellings() -> None:
    model = StoredModel.model_validate({
        "emodel": "cell", "githash": "abc", "seed": "3", "score": 1.5, "etype": "None",
        "params": {"g_pas.all": 1e-5}, "fitness": None, "validated": True})
    assert (model.seed, model.iteration, model.parameters) == (3, "abc", {"g_pas.all": 1e-5})
    assert model.etype is None and model.fitness == {}
    tagged = StoredModel.model_validate({"emodel": "cell", "iteration_tag": "t", "seed": 4.0})
    assert (tagged.iteration, tagged.seed) == ("t", 4)
    assert tagged.key == final_key("cell", "t", 4) == "cell__t__4"
    assert final_key("cell", None, 4) == "cell__4"
    for bad in ("abc", True, 1.5, None):
        with pytest.raises(pydantic.ValidationError, match="seed"):
            StoredModel.model_validate({"emodel": "cell", "seed": bad})


def test_stored_model_round_trip_keeps_extra_keys() -> None:
    entry = {
        "emodel": "cell", "etype": "cAD", "ttype": None, "mtype": None, "species": "rat",
        "brain_region": "SSCX", "iteration": "it", "synapse_class": None,
        "allen_notation": None, "score": 3.5, "parameters": {"g_pas.all": 1e-5},
        "fitness": {"a.soma.v.f": 1.5, "b.soma.v.f": 2.0}, "features": {"a.soma.v.f": None},
        "validation_fitness": {}, "validated": None, "seed": 2, "pdfs": [],
        "threshold_data": {"bpo_holding_current": -0.05, "bpo_threshold_current": 0.3},
        "written_by": {"tool": "other", "version": [1, 2]},
    }
    model = StoredModel.model_validate(json_round_trip(entry))
    written = json_round_trip(model.as_dict())
    assert written == entry
    assert list(written)[:len(REFERENCE_ENTRY_KEYS)] == REFERENCE_ENTRY_KEYS
    assert StoredModel.model_validate(written) == model
    without_threshold = {k: v for k, v in entry.items() if k != "threshold_data"}
    assert "threshold_data" not in StoredModel.model_validate(without_threshold).as_dict()


def test_stored_model_from_result() -> None:
    metadata = EModelMetadata(emodel="cell", species="rat", iteration_tag="it",
                              allen_notation="SS1")
    model = StoredModel.from_result(metadata, 5, {"g.all": 1.0},
                                    {"a": 1.0, "b": 2.5, "c": None})
    assert model.score == 3.5 and model.seed == 5 and model.iteration == "it"
    assert model.allen_notation == "SS1" and model.key == "cell__it__5"
    assert list(model.as_dict()) == REFERENCE_ENTRY_KEYS
    nan = StoredModel.model_validate({"emodel": "c", "seed": 1,
                                      "fitness": {"a": float("nan"), "b": 2.0, "c": None}})
    assert nan.finite_fitness == {"b": 2.0}


def test_emodel_workflow_round_trip() -> None:
    workflow = EModelWorkflow(targets_configuration_id="t", pipeline_settings_id="p",
                              emodel_configuration_id="e", emodels=["m1"], state="running")
    assert EModelWorkflow.model_validate(json_round_trip(workflow.model_dump())) == workflow
    assert workflow.get_configuration_ids() == ("t", "p", "e")
    with_fitness = workflow.model_copy(update={"fitness_configuration_id": "f"})
    assert with_fitness.get_configuration_ids() == ("t", "p", "e", "f")
    assert EModelWorkflow().model_dump() == {
        "targets_configuration_id": None, "pipeline_settings_id": None,
        "emodel_configuration_id": None, "fitness_configuration_id": None, "emodels": [],
        "emodel_scripts_id": [], "state": "not launched"}
    with pytest.raises(pydantic.ValidationError):
        EModelWorkflow(state="finished")


# -- every file kind ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(FILE_KINDS))
def test_every_kind_rejects_unknown_keys_except_stored_models(kind: str) -> None:
    minimal: dict[str, dict[str, Any]] = {
        "recipe": {"morphology": "c.swc", "params": "p.json"},
        "stored_model": {"emodel": "c", "seed": 1},
        "metadata": {"emodel": "c"},
    }
    model = FILE_KINDS[kind]
    data = {**minimal.get(kind, {}), "surely_not_a_key": 1}
    if kind == "stored_model":  # final.json entries keep what other tools wrote
        assert model.model_validate(data).model_extra == {"surely_not_a_key": 1}
        return
    with pytest.raises(ConfigurationError, match=r"^f\.json: surely_not_a_key: Extra inputs"):
        parse_model(model, data, "f.json")
