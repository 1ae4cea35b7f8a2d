"""LocalAccessPoint: every method of the storage contract on projects in every layout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import EMODEL, TARGETS, make_project, stored_entry
from luigi_emodel import (
    ConfigurationError,
    FitnessCalculatorConfiguration,
    LocalAccessPoint,
    ModelConfiguration,
    OptimisationState,
    StorageError,
    StoredModel,
    TargetsConfiguration,
    get_access_point,
)
from luigi_emodel.schemas import EModelWorkflow

LAYOUTS = [
    pytest.param({"params_format": "new", "features_format": "new"}, id="new-new"),
    pytest.param({"params_format": "legacy", "features_format": "new"}, id="legacy-new"),
    pytest.param({"params_format": "new", "features_format": "legacy"}, id="new-legacy"),
    pytest.param({"params_format": "legacy", "features_format": "legacy"}, id="legacy-legacy"),
    pytest.param({"params_format": "legacy", "features_format": "legacy",
                  "legacy_dir_structure": True}, id="legacy-dir"),
    pytest.param({"params_format": "new", "features_format": "new",
                  "settings_in_file": True}, id="settings-file"),
]


def open_project(root: Path, layout: dict, **kwargs) -> LocalAccessPoint:
    make_project(root, **layout)
    return LocalAccessPoint(
        EMODEL, emodel_dir=root, recipes_path="recipes.json",
        legacy_dir_structure=layout.get("legacy_dir_structure", False), **kwargs,
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_configurations_load_in_every_layout(tmp_path: Path, layout: dict) -> None:
    ap = open_project(tmp_path, layout, iteration_tag="t1")
    assert ap.pipeline_settings.max_ngen == 2
    assert ap.has_pipeline_settings()
    assert ap.get_pipeline_settings().offspring_size == 4

    config = ap.get_model_configuration()
    assert isinstance(config, ModelConfiguration)
    assert config.free_parameter_names == [
        "constant.distribution_decay", "g_pas.all", "gnabar_nakx.somaxon",
        "gkbar_nakx.somatic", "gleakxbar_leakx.alldend",
    ]
    by_name = {p.full_name: p for p in config.parameters}
    assert by_name["gleakxbar_leakx.alldend"].distribution == "exp"
    assert by_name["gnabar_nakx.somaxon"].mechanism == "nakx"
    assert config.morphology.name == "tiny_cell"
    assert Path(config.morphology.path).is_file()
    assert ap.has_model_configuration()

    fcc = ap.get_fitness_calculator_configuration()
    assert isinstance(fcc, FitnessCalculatorConfiguration)
    assert sorted(fcc.objective_names) == [
        "Step_200.soma.v.Spikecount", "Step_200.soma.v.voltage_base",
        "Step_300.soma.v.Spikecount",
    ]
    step = next(p for p in fcc.protocols if p.name == "Step_300")
    assert step.stimuli[0]["amp"] == 0.3
    assert ap.has_fitness_calculator_configuration()

    targets = ap.get_targets_configuration()
    assert isinstance(targets, TargetsConfiguration)
    assert targets.targets[0].amplitude == 150
    assert ap.has_targets_configuration()

    assert ap.morph_path.name == "tiny_cell.swc"
    assert ap.morph_dir == ap.morph_path.parent
    assert ap.get_available_morphologies() == {"tiny_cell"}
    assert ap.get_morphologies() == {"name": "tiny_cell", "path": str(ap.morph_path)}


def test_paths_resolve_against_run_root_not_cwd(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "root"
    make_project(root)
    monkeypatch.chdir(tmp_path)
    ap = LocalAccessPoint(EMODEL, emodel_dir="root", recipes_path="recipes.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # nothing may depend on the CWD after construction
    assert ap.emodel_dir == root
    assert ap.final_path == root / "final.json"
    ap.store_emodel(stored_entry(1))
    assert (root / "final.json").is_file()
    assert (root / "final.json.lock").exists()
    assert ap.has_model_configuration()
    assert ap.has_fitness_calculator_configuration()
    assert ap.has_targets_configuration()
    assert ap.checkpoint_path(1).is_relative_to(root)
    assert list(elsewhere.iterdir()) == []  # no lock or build folder in the CWD


def test_default_emodel_dir_is_cwd_or_run_tag(tmp_path: Path, monkeypatch) -> None:
    make_project(tmp_path)
    make_project(tmp_path / "run" / "v2")
    monkeypatch.chdir(tmp_path)
    assert LocalAccessPoint(EMODEL).emodel_dir == tmp_path
    tagged = LocalAccessPoint(EMODEL, iteration_tag="v2")
    assert tagged.emodel_dir == tmp_path / "run" / "v2"
    assert tagged.final_path == tmp_path / "run" / "v2" / "final.json"


def test_absolute_final_and_recipes_paths(tmp_path: Path) -> None:
    make_project(tmp_path / "p")
    final = tmp_path / "results" / "models.json"
    ap = LocalAccessPoint(EMODEL, emodel_dir=tmp_path / "other",
                          recipes_path=tmp_path / "p" / "recipes.json", final_path=final)
    # The recipe's relative paths resolve against emodel_dir; point it at the project.
    ap2 = LocalAccessPoint(EMODEL, emodel_dir=tmp_path / "p", final_path=final)
    ap2.store_emodel(stored_entry(4))
    assert final.is_file() and ap.final_path == final
    assert ap.has_best_model(4)


def test_with_seeds_maps_name_to_recipe(tmp_path: Path) -> None:
    make_project(tmp_path, emodel="cADpyr_L5TPC")
    ap = LocalAccessPoint("cADpyr_L5TPC_3", emodel_dir=tmp_path, with_seeds=True)
    assert ap.get_recipes()["params"] == "config/params/cell.json"
    assert ap.get_model_name_for_final(7) == "cADpyr_L5TPC_3__7"
    ap.set_emodel("cADpyr_L5TPC_4")
    assert ap.emodel_metadata.emodel == "cADpyr_L5TPC"


def test_store_and_read_models(access_point: LocalAccessPoint) -> None:
    ap = access_point
    assert not ap.has_best_model(1)
    ap.store_emodel(stored_entry(1, score=4.0))
    ap.store_emodel(stored_entry(2, score=2.0))
    assert ap.has_best_model(1) and ap.has_best_model(2) and not ap.has_best_model(3)
    assert ap.get_model_name_for_final(1) == f"{EMODEL}__it1__1"
    final = ap.get_final()
    entry = final[f"{EMODEL}__it1__1"]
    assert entry["score"] == 4.0 and entry["iteration"] == "it1"
    assert entry["species"] == "rat" and entry["brain_region"] == "SSCX"
    assert entry["validated"] is None and entry["pdfs"] == []
    assert ap.get_final_content() == final
    models = ap.get_emodels()
    assert sorted(m.seed for m in models) == [1, 2]
    assert all(isinstance(m, StoredModel) for m in models)
    assert ap.get_emodel().seed == 2  # the best score
    assert ap.get_emodel_names() == {f"{EMODEL}__it1__1": EMODEL, f"{EMODEL}__it1__2": EMODEL}
    # Metadata must match exactly, as in the reference: another species sees nothing.
    other = LocalAccessPoint(EMODEL, emodel_dir=ap.emodel_dir, species="mouse",
                             brain_region="SSCX", iteration_tag="it1")
    assert other.get_emodels() == []
    assert other.has_best_model(1)  # the key does not include the species


def test_validation_predicates(access_point: LocalAccessPoint) -> None:
    ap = access_point
    ap.store_emodel(stored_entry(1))
    assert not ap.is_checked_by_validation(1)
    assert not ap.is_checked_by_validation(9)
    ap.store_emodel(stored_entry(1, validated=False))
    assert ap.is_checked_by_validation(1)
    assert not ap.is_validated()
    ap.store_emodel(stored_entry(2, validated=True))
    assert not ap.is_validated()  # n_model is 2
    ap.store_emodel(stored_entry(3, validated=True))
    assert ap.is_validated()
    assert ap.count_validated() == (2, 3)
    assert ap.count_validated(seeds=[1, 2]) == (1, 2)


def test_store_replaces_only_its_key(access_point: LocalAccessPoint) -> None:
    ap = access_point
    ap.store_emodel(stored_entry(1))
    ap.store_emodel(stored_entry(2))
    before = ap.final_path.read_text().splitlines()
    ap.store_emodel(stored_entry(1, score=9.0, validated=True))
    after = ap.final_path.read_text().splitlines()
    assert len(before) == len(after) == 4
    assert before[2] == after[2]  # the other entry's text is untouched
    assert json.loads(ap.final_path.read_text())[f"{EMODEL}__it1__1"]["score"] == 9.0


def test_save_final_and_reference_spellings(access_point: LocalAccessPoint) -> None:
    ap = access_point
    legacy = {
        EMODEL: {"emodel": EMODEL, "githash": "it1", "seed": "5", "score": 3.0,
                 "params": {"g_pas.all": 3e-5}, "fitness": {"a": 1.0}, "validated": True},
    }
    ap.save_final(legacy, ap.final_path)
    model = ap.get_emodel()  # the bare-name legacy key
    assert model.seed == 5 and model.iteration == "it1"
    assert model.parameters == {"g_pas.all": 3e-5}
    assert ap.format_emodel_data(legacy[EMODEL]).score == 3.0


def test_final_tmp_recovery_and_corrupt_final(access_point: LocalAccessPoint) -> None:
    ap = access_point
    ap.store_emodel(stored_entry(1))
    good = ap.final_path.read_text()
    ap.final_path.write_text(good[: len(good) // 2])
    with pytest.raises(StorageError, match=r"final\.json: corrupt \(line \d+, column \d+\)"):
        ap.has_best_model(1)
    assert ap.final_path.read_text() == good[: len(good) // 2]  # left for the user
    with pytest.raises(StorageError):
        ap.store_emodel(stored_entry(2))
    assert ap.final_path.read_text() == good[: len(good) // 2]
    (ap.final_path.parent / "final_tmp.json").write_text(good)
    assert ap.has_best_model(1)
    ap.store_emodel(stored_entry(2))
    assert ap.has_best_model(1) and ap.has_best_model(2)
    kept = list(ap.final_path.parent.glob("final.corrupt-*.json"))
    assert len(kept) == 1 and kept[0].read_text() == good[: len(good) // 2]


def test_stat_cache_sees_other_writers(access_point: LocalAccessPoint) -> None:
    ap = access_point
    other = LocalAccessPoint(EMODEL, emodel_dir=ap.emodel_dir, species="rat",
                             brain_region="SSCX", iteration_tag="it1")
    from luigi_emodel.access_point.final_store import FinalStore

    # A store that is not shared stands for another process.
    other.final_store = FinalStore(other.final_path, root=other.emodel_dir)
    for seed in range(20):
        other.store_emodel(stored_entry(seed))
        assert ap.has_best_model(seed)  # same size, same tick: still seen


def test_optimisation_state(access_point: LocalAccessPoint) -> None:
    ap = access_point
    assert ap.optimisation_state(seed=1) is OptimisationState.EMPTY
    checkpoint = ap.checkpoint_path(1)
    assert checkpoint == ap.emodel_dir / "checkpoints" / EMODEL / "it1" / (
        f"emodel={EMODEL}__species=rat__brain_region=SSCX__iteration=it1__seed=1.pkl")
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"pickle")
    assert ap.optimisation_state(seed=1) is OptimisationState.IN_PROGRESS
    ap.store_optimisation_progress(1, {"generation": 1, "completed": False})
    assert ap.optimisation_state(seed=1, continue_opt=True) is OptimisationState.IN_PROGRESS
    ap.store_optimisation_progress(1, {"generation": 2, "completed": True,
                                       "stopped_by": "max_ngen"})
    assert ap.optimisation_state(seed=1) is OptimisationState.COMPLETED
    raised = {**ap.get_recipes()["pipeline_settings"], "max_ngen": 5}
    ap.pipeline_settings = ap.pipeline_settings.model_copy(update={"max_ngen": 5})
    assert raised["max_ngen"] == 5
    assert ap.optimisation_state(seed=1) is OptimisationState.IN_PROGRESS


def test_exports_and_store_hocs(access_point: LocalAccessPoint) -> None:
    ap = access_point
    ap.store_emodel(stored_entry(1, score=1.0, validated=True))
    ap.store_emodel(stored_entry(2, score=5.0, validated=False))
    assert not ap.sonata_exists(1)
    with pytest.raises(StorageError, match="no sonata export"):
        ap.store_emodels_sonata()
    folder = ap.export_dir("sonata", 1)
    assert folder.parent.name == "export_emodels_sonata"
    folder.mkdir(parents=True)
    (folder / "model.hoc").write_text("// hoc")
    assert ap.sonata_exists(1)
    assert ap.store_emodels_sonata() == [folder / "model.hoc"]
    assert ap.store_hocs(output_base_dir="export_emodels_sonata", only_validated=True) == [
        folder / "model.hoc"]
    with pytest.raises(StorageError, match="no hoc export"):
        ap.store_emodels_hoc(only_best=False)
    assert [m.seed for m in ap.select_models(only_best=False, seeds=[2])] == [2]


def test_store_configurations_round_trip(access_point: LocalAccessPoint) -> None:
    ap = access_point
    config = ap.get_model_configuration()
    written = ap.store_model_configuration(config, path="config/params/copy.json")
    assert written == ap.emodel_dir / "config/params/copy.json"
    from luigi_emodel.schemas import parse_model

    again = parse_model(ModelConfiguration, json.loads(written.read_text()), "copy.json")
    assert again == config
    fcc = ap.get_fitness_calculator_configuration()
    path = ap.store_fitness_calculator_configuration(fcc)
    assert ap.get_fitness_calculator_configuration() == fcc
    assert path == ap.get_json_path("features")
    targets = ap.get_targets_configuration()
    ap.store_targets_configuration(targets)
    assert ap.get_targets_configuration() == targets
    assert json.loads(ap._targets_path().read_text())["emodel"] == EMODEL


def test_store_outside_run_root_refused(access_point: LocalAccessPoint) -> None:
    config = access_point.get_model_configuration()
    with pytest.raises(ConfigurationError, match="leaves the run root"):
        access_point.store_model_configuration(config, path="../outside.json")
    assert not (access_point.emodel_dir.parent / "outside.json").exists()


def test_legacy_features_to_new_format_keeps_objectives(tmp_path: Path) -> None:
    ap = open_project(tmp_path, {"features_format": "legacy"})
    fcc = ap.get_fitness_calculator_configuration()
    ap.store_fitness_calculator_configuration(fcc)  # now the new format at the same path
    again = ap.get_fitness_calculator_configuration()
    assert again.objective_names == fcc.objective_names
    assert [p.protocol_type for p in again.protocols] == ["Protocol", "Protocol"]
    assert next(p for p in again.protocols if p.name == "Step_200").stimuli[0][
        "holding_current"] == 0.0


def test_validation_protocols_flagged(tmp_path: Path) -> None:
    make_project(tmp_path)
    recipes = json.loads((tmp_path / "recipes.json").read_text())
    recipes[EMODEL]["pipeline_settings"]["validation_protocols"] = {"Step": [300]}
    (tmp_path / "recipes.json").write_text(json.dumps(recipes))
    ap = LocalAccessPoint(EMODEL, emodel_dir=tmp_path)
    flags = {p.name: p.validation for p in ap.get_fitness_calculator_configuration().protocols}
    assert flags == {"Step_200": False, "Step_300": True}


def test_available_mechanisms_parsed(access_point: LocalAccessPoint) -> None:
    mechanisms = {m.name: m for m in access_point.get_available_mechanisms()}
    assert set(mechanisms) == {"leakx", "nakx", "cadynx"}
    assert mechanisms["nakx"].ion_currents == ["ina", "ik"]
    assert mechanisms["nakx"].ionic_concentrations == ["nai", "ki"]
    assert mechanisms["leakx"].nonspecific_currents == ["il"]
    assert mechanisms["cadynx"].ion_currents == []
    assert mechanisms["cadynx"].ionic_concentrations == ["cai"]
    assert access_point.get_mechanisms_directory() == access_point.emodel_dir / "mechanisms"
    currents, concentrations = access_point.get_ion_currents_concentrations()
    assert set(currents) == {"ina", "ik", "il", "i_pas"}
    assert set(concentrations) == {"nai", "ki", "cai"}


def test_unfrozen_params(access_point: LocalAccessPoint) -> None:
    ap = access_point
    entry = stored_entry(1)
    entry["parameters"] = {
        "constant.distribution_decay": -0.01, "g_pas.all": 2e-5, "gnabar_nakx.somaxon": 0.1,
        "gkbar_nakx.somatic": 0.05, "gleakxbar_leakx.alldend": 1e-5,
    }
    ap.store_emodel(entry)
    ap.set_unfrozen_params(["g_pas.all"])
    config = ap.get_model_configuration()
    assert config.free_parameter_names == ["g_pas.all"]
    assert {p.full_name: p.value for p in config.parameters}["gkbar_nakx.somatic"] == 0.05
    ap.set_unfrozen_params(["nope.all"])
    with pytest.raises(ConfigurationError, match="nope.all"):
        ap.get_model_configuration()


def test_add_entry_recipes_and_workflow(tmp_path: Path) -> None:
    make_project(tmp_path)
    LocalAccessPoint.add_entry_recipes(
        tmp_path / "recipes.json", "second", "morphologies/", ["tiny", "tiny_cell.swc"],
        "config/params/cell.json", None, "config/features/second.json",
        pipeline_settings={"max_ngen": 3},
    )
    ap = LocalAccessPoint("second", emodel_dir=tmp_path)
    assert ap.pipeline_settings.max_ngen == 3
    assert set(ap.get_all_recipes()) == {EMODEL, "second"}
    workflow = ap.create_emodel_workflow()
    assert isinstance(workflow, EModelWorkflow) and workflow.state == "not launched"
    assert ap.get_emodel_workflow() == (None, None)
    assert ap.check_emodel_workflow_configurations(workflow) is True
    assert ap.store_or_update_emodel_workflow(workflow) is None
    assert not ap.has_fitness_calculator_configuration()


def test_final_from_recipe_em_file(tmp_path: Path) -> None:
    make_project(tmp_path)
    recipes = json.loads((tmp_path / "recipes.json").read_text())
    recipes[EMODEL]["final"] = "EM_cell.json"
    (tmp_path / "recipes.json").write_text(json.dumps(recipes))
    (tmp_path / "EM_cell.json").write_text(json.dumps({
        "fitness": 2.5, "parameter": [{"name": "g_pas.all", "value": 1e-5}],
        "score": [{"name": "a", "value": 2.5}], "seed": 3, "passedValidation": True}))
    ap = LocalAccessPoint(EMODEL, emodel_dir=tmp_path)
    content = ap.get_final_content()
    assert content[EMODEL]["parameters"] == {"g_pas.all": 1e-5}
    assert ap.get_emodel().seed == 3


def test_factory(tmp_path: Path) -> None:
    make_project(tmp_path)
    ap = get_access_point("local", EMODEL, emodel_dir=tmp_path, etype="cAD__pyr")
    assert ap.emodel_metadata.etype == "cAD pyr"
    with pytest.raises(ConfigurationError, match="expected 'local'"):
        get_access_point("nexus", EMODEL)


def test_figure_and_export_paths_stay_inside(access_point: LocalAccessPoint) -> None:
    ap = access_point
    root = ap.emodel_dir
    for path in (ap.figure_path("traces", seed=3), ap.figures_dir("scores"),
                 ap.export_dir("hoc", 3), ap.state_dir("mechanisms"),
                 ap.optimisation_progress_path(2)):
        assert os.path.commonpath([root, path]) == str(root)


def test_legacy_params_errors_name_the_legacy_fields(tmp_path: Path) -> None:
    """Errors in a legacy params file name its own fields, not the converted lists'."""
    make_project(tmp_path, params_format="legacy")
    path = tmp_path / "config/params/cell.json"
    params = json.loads(path.read_text())
    params["parameters"]["somatic"][0]["val"] = [0.1, 0.01]  # low > high
    params["parameters"]["alldend"][0]["dist"] = "sigmoid"  # undefined distribution
    path.write_text(json.dumps(params))
    ap = LocalAccessPoint(EMODEL, emodel_dir=tmp_path)
    with pytest.raises(ConfigurationError) as info:
        ap.get_model_configuration()
    assert str(info.value).startswith(
        "config/params/cell.json: parameters.somatic[0].val: bounds [low, high] with low > high")
    params["parameters"]["somatic"][0]["val"] = [0.01, 0.1]
    path.write_text(json.dumps(params))
    with pytest.raises(ConfigurationError, match=r"parameters\.alldend\[0\]\.dist: unknown "
                                                 r"distribution 'sigmoid'"):
        ap.get_model_configuration()
