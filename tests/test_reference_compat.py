"""Compatibility with the real reference, BluePyEModel 1.0.50, run in its own virtual env.

Both directions, in one batch of reference-side calls (its import takes seconds):

* the reference's LocalAccessPoint reads a final.json, configurations and recipes that we
  wrote (and the legacy-format files both packages read): it must see exactly what we
  stored;
* it writes final.json (``store_emodel`` of its EModel objects, ``save_final``), model,
  fitness-calculator and targets configurations and recipes entries, and our
  LocalAccessPoint must read the same content back.

The reference side is ``tests/reference_side.py``, run by the reference's python with the
run root as working directory (the reference puts its ``.tmp/`` locks there and resolves
several paths against it). The reference's python is ``$LUIGI_EMODEL_REFERENCE_PYTHON``,
else ``~/.cache/luigi_emodel/ref-venv/bin/python`` (``make reference`` installs it).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import EMODEL, make_project, stored_entry
from fitness_view import fitness_view
from luigi_emodel import ConfigurationError, LocalAccessPoint, ModelConfiguration
from luigi_emodel.schemas import DistributionConfig, StoredModel, final_key, parse_model

pytestmark = pytest.mark.reference

REFERENCE_VERSION = "1.0.50"
DEFAULT_REFERENCE_PYTHON = Path.home() / ".cache" / "luigi_emodel" / "ref-venv" / "bin" / "python"
SKIP_REASON = f"bluepyemodel {REFERENCE_VERSION} not available: run `make reference`"
REFERENCE_SIDE = Path(__file__).with_name("reference_side.py")

NAN = float("nan")
#: Metadata of the access points. Ours writes under META_OURS; the reference under META_REF,
#: which fills every field so that the reference's strict filter is exercised on all of them.
META_OURS: dict[str, Any] = {"species": "rat", "brain_region": "SSCX", "iteration_tag": "it1"}
META_OURS_LEGACY: dict[str, Any] = {"etype": "cADpyr"}  # no iteration: keys are emodel__seed
META_REF: dict[str, Any] = {
    "etype": "cADpyr", "mtype": "L5_TPC:A", "species": "mouse", "brain_region": "SSp",
    "iteration_tag": "it2", "synapse_class": "EXC",
}
SEEDS = [1, 2, 3, 4, 5, 6]
#: Pipeline settings given explicitly to add_entry_recipes (both sides).
EXPLICIT_SETTINGS: dict[str, Any] = {
    "optimiser": "SO-CMA", "max_ngen": 7, "n_model": 1, "validation_threshold": 12.5,
    "validation_protocols": ["Step_300"], "path_extract_config": "config/extract_config/x.json",
}
#: Models the reference stores with its own EModel objects.
REF_MODELS: list[dict[str, Any]] = [
    {"seed": 11, "scores": {"Step_200.soma.v.Spikecount": 1.5, "Step_300.soma.v.Spikecount": 0.25},
     "parameters": {"g_pas.all": 2.5e-5, "gnabar_nakx.somaxon": 0.11},
     "features": {}, "scores_validation": {}, "passed_validation": None},
    {"seed": 12, "scores": {"Step_200.soma.v.Spikecount": 0.5, "Step_300.soma.v.Spikecount": 0.5},
     "parameters": {"g_pas.all": 3e-5, "gnabar_nakx.somaxon": 0.2},
     "features": {"Step_200.soma.v.Spikecount": 6.0, "Step_300.soma.v.Spikecount": NAN},
     "scores_validation": {"Step_300.soma.v.Spikecount": 0.75}, "passed_validation": True},
    {"seed": 13, "scores": {"Step_200.soma.v.Spikecount": 40.0, "Step_300.soma.v.Spikecount": 2.0},
     "parameters": {"g_pas.all": 9e-5, "gnabar_nakx.somaxon": 0.06},
     "features": {"Step_200.soma.v.Spikecount": 0.0}, "scores_validation": {},
     "passed_validation": False},
    {"seed": 14, "scores": {"Step_200.soma.v.Spikecount": 1.0},
     "parameters": {"g_pas.all": 1e-5}, "features": {}, "scores_validation": {},
     "passed_validation": True},
]
#: A legacy bare-name entry (githash, params, string seed) the reference saves with save_final.
LEGACY_ENTRY: dict[str, Any] = {
    "emodel": EMODEL, "githash": "it0", "seed": "7", "score": 2.5,
    "params": {"g_pas.all": 4e-5}, "fitness": {"Step_200.soma.v.Spikecount": 2.5},
    "validated": True,
}


# -- helpers ------------------------------------------------------------------------------------


def reference_python() -> Path | None:
    """The reference's python: the environment variable, else the default venv, if present."""
    configured = os.environ.get("LUIGI_EMODEL_REFERENCE_PYTHON")
    candidate = Path(configured) if configured else DEFAULT_REFERENCE_PYTHON
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def run_reference(python: Path, jobs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Run every job in one reference process; the step results, job by job."""
    completed = subprocess.run(
        [str(python), str(REFERENCE_SIDE)],
        input=json.dumps({"jobs": jobs}),
        capture_output=True, text=True, cwd=jobs[0]["root"], timeout=300, check=False,
        # Its own site-packages only: nothing of ours may leak into the reference's imports.
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")},
    )
    if completed.returncode != 0:
        if "No module named 'bluepyemodel'" in completed.stderr:
            pytest.skip(f"{SKIP_REASON} ({python} has no bluepyemodel)")
        pytest.fail(f"reference side failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    out = json.loads(completed.stdout)
    if out["version"] != REFERENCE_VERSION:
        pytest.skip(f"{SKIP_REASON} ({python} has bluepyemodel {out['version']})")
    return out["jobs"]


def result(step: dict[str, Any]) -> Any:
    """The value of a reference step; a step that raised fails the test with its error."""
    assert "error" not in step, f"the reference raised: {step['error']}"
    return step["result"]


def canon(value: Any) -> Any:
    """``value`` with NaN made comparable and numbers as floats (JSON ints == floats)."""
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return "NaN" if math.isnan(value) else float(value)
    return value


def our_parameters(config: ModelConfiguration) -> list[tuple[Any, ...]]:
    return [(p.name, p.location, canon(p.value), p.distribution, p.mechanism)
            for p in config.parameters]


def reference_parameters(view: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(p["name"], p["location"], canon(p["value"]), p["distribution"], p["mechanism"])
            for p in view["parameters"]]


def sorted_distributions(distributions: list[DistributionConfig]) -> list[DistributionConfig]:
    return sorted(distributions, key=lambda d: d.name)


def our_fitness_view(ap: LocalAccessPoint) -> dict[str, Any]:
    """Our reading of the fitness-calculator configuration, shaped as the reference side's."""
    return canon(fitness_view(ap.get_fitness_calculator_configuration()))


def use_decay_distribution(root: Path, legacy: bool) -> None:
    """Make a parameter use the ``decay`` distribution of the fixture's params file.

    The reference writes only the distributions some parameter uses; the fixture's ``decay``
    is used by none (only its own parameter refers to it), which the reference loses (see
    :func:`test_reference_loses_unused_distribution`).
    """
    path = root / "config" / "params" / "cell.json"
    params = json.loads(path.read_text())
    if legacy:
        params["parameters"]["somaxon"][0]["dist"] = "decay"
    else:
        sodium = next(p for p in params["parameters"] if p["name"] == "gnabar_nakx")
        sodium["distribution"] = "decay"
    path.write_text(json.dumps(params, indent=2))


def move_soma_reference(root: Path, distribution: str, location: float) -> None:
    """Give a distribution of the (new-format) params file a non-default soma_ref_location."""
    path = root / "config" / "params" / "cell.json"
    params = json.loads(path.read_text())
    next(d for d in params["distributions"] if d["name"] == distribution)[
        "soma_ref_location"] = location
    path.write_text(json.dumps(params, indent=2))


def our_models() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(metadata, entry) of every model we store in the run root the reference reads."""
    first = stored_entry(1, score=3.0)
    first["features"] = {"Step_200.soma.v.Spikecount": 5.0, "Step_300.soma.v.Spikecount": NAN}
    second = stored_entry(2, score=1.0, validated=True)
    second["validation_fitness"] = {"Step_300.soma.v.Spikecount": 0.5}
    second["features"] = {"Step_200.soma.v.Spikecount": 6.0}
    return [
        (META_OURS, first),
        (META_OURS, second),
        (META_OURS, stored_entry(3, score=80.0, validated=False)),
        # Same key prefix, other metadata: the reference filters on every field.
        ({**META_OURS, "species": "mouse"}, stored_entry(4, score=2.0, validated=True)),
        ({**META_OURS, "etype": "cADpyr"}, stored_entry(5, score=4.0)),
    ]


def assert_same_models(reference: list[dict[str, Any]], ours: list[StoredModel]) -> None:
    """The reference's EModel views equal our stored models, in the same order."""
    assert [m["seed"] for m in reference] == [m.seed for m in ours]
    for ref, model in zip(reference, ours):
        assert canon(ref["fitness"]) == canon(model.score)
        assert canon(ref["scores"]) == canon(model.fitness)
        assert canon(ref["parameters"]) == canon(model.parameters)
        assert canon(ref["features"]) == canon(model.features)
        assert canon(ref["scores_validation"]) == canon(model.validation_fitness)
        assert ref["passed_validation"] is model.validated
        assert ref["metadata"] == {**model.metadata_dict(), "allen_notation": model.allen_notation}


def assert_same_settings(reference: dict[str, Any], ours: dict[str, Any]) -> None:
    """Pipeline settings as the reference holds them equal ours, key for key.

    Ours also has ``plot_optimisation`` (which the reference accepts but does not keep).
    """
    assert set(ours) - set(reference) <= {"plot_optimisation"}
    assert set(reference) <= set(ours)
    assert canon({k: ours[k] for k in reference}) == canon(reference)


# -- the exchange: every file written, then one batch of reference calls ----------------------


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run roots written by us and by the reference, and the reference's answers."""
    python = reference_python()
    if python is None:
        pytest.skip(SKIP_REASON)
    base = tmp_path_factory.mktemp("reference").resolve()
    data: dict[str, Any] = {}
    jobs: list[dict[str, Any]] = []
    reference_steps = []

    def job(name: str, root: Path, emodel: str, meta: dict[str, Any],
            steps: list[dict[str, Any]]) -> None:
        jobs.append({"root": str(root), "emodel": emodel,
                     "access_point": {"recipes_path": "recipes.json", **meta},
                     "steps": steps})
        # Steps are looked up by op name; a repeated op gets a suffix (op#2, op#3...).
        names: list[str] = []
        for step in steps:
            count = sum(n.split("#")[0] == step["op"] for n in names)
            names.append(step["op"] if count == 0 else f"{step['op']}#{count + 1}")
        reference_steps.append((name, names))

    read_all = [
        {"op": "get_final"}, {"op": "get_emodels"}, {"op": "has_best_model", "seeds": SEEDS},
        {"op": "is_checked_by_validation", "seeds": SEEDS}, {"op": "is_validated"},
        {"op": "get_emodel_names"}, {"op": "pipeline_settings"},
        {"op": "get_model_configuration"}, {"op": "get_fitness_calculator_configuration"},
        {"op": "get_targets_configuration"},
    ]

    # 1. We write new-format configurations, models and recipes; the reference reads them.
    root = base / "ours_new"
    make_project(root)
    ours = LocalAccessPoint(EMODEL, emodel_dir=root, **META_OURS)
    ours.store_model_configuration(ours.get_model_configuration())
    ours.store_fitness_calculator_configuration(ours.get_fitness_calculator_configuration())
    ours.store_targets_configuration(ours.get_targets_configuration())
    for meta, entry in our_models():
        LocalAccessPoint(EMODEL, emodel_dir=root, **meta).store_emodel(entry)
    for name, settings in (("second", None), ("third", EXPLICIT_SETTINGS)):
        LocalAccessPoint.add_entry_recipes(
            root / "recipes.json", name, "morphologies/", ["tiny_cell", "tiny_cell.swc"],
            "config/params/cell.json", None, f"config/features/{EMODEL}.json",
            pipeline_settings=settings)
    data["ours_new"] = root
    job("ours_new", root, EMODEL, META_OURS, read_all)
    job("ours_new_mouse", root, EMODEL, {**META_OURS, "species": "mouse"},
        [{"op": "get_emodels"}])
    job("ours_second", root, "second", META_OURS,
        [{"op": "pipeline_settings"}, {"op": "get_model_configuration"}])
    job("ours_third", root, "third", {}, [{"op": "pipeline_settings"}])

    # 2. Legacy-format files (that we read but never write) and our models without iteration.
    root = base / "ours_legacy"
    make_project(root, params_format="legacy", features_format="legacy", settings_in_file=True)
    ours = LocalAccessPoint(EMODEL, emodel_dir=root, **META_OURS_LEGACY)
    ours.store_emodel(stored_entry(1, score=2.0))
    ours.store_emodel(stored_entry(2, score=1.0, validated=True))
    ours.store_emodel(stored_entry(3, score=1.0, validated=True))
    data["ours_legacy"] = root
    job("ours_legacy", root, EMODEL, META_OURS_LEGACY, read_all)

    # 3. The reference reads legacy formats and writes everything; we read it back.
    root = base / "ref_legacy"
    make_project(root, params_format="legacy", features_format="legacy")
    use_decay_distribution(root, legacy=True)
    ours = LocalAccessPoint(EMODEL, emodel_dir=root, **META_REF)
    data["ref_legacy_before"] = {
        "model": ours.get_model_configuration(),
        "fitness": ours.get_fitness_calculator_configuration(),
        "targets": ours.get_targets_configuration(),
    }
    entry_kwargs = {"recipes_path": "recipes.json", "morph_path": "morphologies/",
                    "morphology": ["tiny_cell", "tiny_cell.swc"],
                    "parameters_path": "config/params/ref.json", "protocols_path": None,
                    "features_path": f"config/features/{EMODEL}.json"}
    data["ref_legacy"] = root
    job("ref_legacy", root, EMODEL, META_REF, [
        {"op": "get_model_configuration", "store_path": "config/params/ref.json"},
        {"op": "get_fitness_calculator_configuration", "store": True},
        {"op": "get_targets_configuration", "store": True},
        {"op": "store_emodels", "models": REF_MODELS},
        {"op": "save_final", "path": "final_legacy.json", "add": {EMODEL: LEGACY_ENTRY}},
        {"op": "add_entry_recipes", "kwargs": {**entry_kwargs, "emodel": "refadded"}},
        {"op": "add_entry_recipes", "kwargs": {**entry_kwargs, "emodel": "refadded2",
                                               "pipeline_settings": EXPLICIT_SETTINGS}},
        {"op": "get_final"},
    ])
    job("ref_legacy_added", root, "refadded", {}, [{"op": "pipeline_settings"}])

    # 4. We write new formats, the reference reads and rewrites them, we read them back.
    root = base / "ref_new"
    make_project(root)
    use_decay_distribution(root, legacy=False)
    move_soma_reference(root, "exp", 0.25)
    ours = LocalAccessPoint(EMODEL, emodel_dir=root, **META_OURS)
    ours.store_model_configuration(ours.get_model_configuration())
    ours.store_fitness_calculator_configuration(ours.get_fitness_calculator_configuration())
    ours.store_targets_configuration(ours.get_targets_configuration())
    data["ref_new_before"] = {
        "model": ours.get_model_configuration(),
        "fitness": ours.get_fitness_calculator_configuration(),
        "targets": ours.get_targets_configuration(),
    }
    data["ref_new"] = root
    job("ref_new", root, EMODEL, META_OURS, [
        {"op": "get_model_configuration", "store_path": "config/params/ref.json"},
        {"op": "get_fitness_calculator_configuration", "store": True},
        {"op": "get_targets_configuration", "store": True},
        {"op": "add_entry_recipes", "kwargs": {**entry_kwargs, "emodel": "refadded"}},
    ])

    answers = run_reference(python, jobs)
    data["reference"] = {
        name: dict(zip(ops, steps)) for (name, ops), steps in zip(reference_steps, answers)
    }
    return data


# -- the reference reads what we wrote ----------------------------------------------------------


def test_reference_reads_our_final_json(exchange: dict[str, Any]) -> None:
    root = exchange["ours_new"]
    ref = exchange["reference"]["ours_new"]
    text = (root / "final.json").read_text()
    content = json.loads(text)
    # Our layout (one entry per line) is what the reference parsed.
    assert len(text.rstrip("\n").split("\n")) == len(content) + 2
    assert canon(result(ref["get_final"])) == canon(content)

    ours = LocalAccessPoint(EMODEL, emodel_dir=root, **META_OURS)
    models = ours.get_emodels()
    assert [m.seed for m in models] == [1, 2, 3]  # seeds 4 and 5 have other metadata
    assert_same_models(result(ref["get_emodels"]), models)
    assert math.isnan(result(ref["get_emodels"])[0]["features"]["Step_300.soma.v.Spikecount"])

    mouse = LocalAccessPoint(EMODEL, emodel_dir=root, **{**META_OURS, "species": "mouse"})
    assert_same_models(result(exchange["reference"]["ours_new_mouse"]["get_emodels"]),
                       mouse.get_emodels())
    assert [m.seed for m in mouse.get_emodels()] == [4]

    assert result(ref["has_best_model"]) == [ours.has_best_model(s) for s in SEEDS] == [
        True, True, True, True, True, False]
    assert result(ref["is_checked_by_validation"]) == [
        ours.is_checked_by_validation(s) for s in SEEDS] == [False, True, True, True, False, False]
    # Two validated models of this emodel and iteration (any species): n_model is 2.
    assert result(ref["is_validated"]) is ours.is_validated() is True
    assert result(ref["get_emodel_names"]) == ours.get_emodel_names()


def test_reference_reads_our_legacy_keys_without_iteration(exchange: dict[str, Any]) -> None:
    root = exchange["ours_legacy"]
    ref = exchange["reference"]["ours_legacy"]
    ours = LocalAccessPoint(EMODEL, emodel_dir=root, **META_OURS_LEGACY)
    assert set(result(ref["get_final"])) == {f"{EMODEL}__{s}" for s in (1, 2, 3)}
    assert_same_models(result(ref["get_emodels"]), ours.get_emodels())
    assert result(ref["has_best_model"]) == [ours.has_best_model(s) for s in SEEDS]
    assert result(ref["is_checked_by_validation"]) == [
        ours.is_checked_by_validation(s) for s in SEEDS] == [False, True, True, False, False, False]
    assert result(ref["is_validated"]) is ours.is_validated() is True


@pytest.mark.parametrize("layout", ["ours_new", "ours_legacy"])
def test_reference_reads_our_configurations(exchange: dict[str, Any], layout: str) -> None:
    """Both readers see the same parameters, e-features, protocols and targets."""
    root = exchange[layout]
    ref = exchange["reference"][layout]
    meta = META_OURS if layout == "ours_new" else META_OURS_LEGACY
    ours = LocalAccessPoint(EMODEL, emodel_dir=root, **meta)

    config = ours.get_model_configuration()
    ref_config = result(ref["get_model_configuration"])
    assert reference_parameters(ref_config) == our_parameters(config)
    assert ("gleakxbar_leakx", "alldend", [1e-6, 1e-4], "exp", "leakx") in our_parameters(config)
    assert {(m["name"], m["location"]) for m in ref_config["mechanisms"]} == {
        (m.name, m.location) for m in config.mechanisms}
    # Every distribution we declare, as the reference holds it, reads back equal.
    ref_distributions = [parse_model(DistributionConfig, d, "reference")
                         for d in ref_config["distributions"] if d["name"] != "uniform"]
    assert sorted_distributions(ref_distributions) == sorted_distributions(config.distributions)
    assert not any("morphology_dependent_parameters" in d for d in ref_config["distributions"])
    assert ref_config["as_dict"]["morphology"]["name"] == config.morphology.name == "tiny_cell"

    assert result(ref["get_fitness_calculator_configuration"])["efeatures"] == our_fitness_view(
        ours)["efeatures"]
    assert canon(result(ref["get_fitness_calculator_configuration"])["protocols"]) == (
        our_fitness_view(ours)["protocols"])
    amplitudes = [p["stimuli"][0]["amp"]
                  for p in result(ref["get_fitness_calculator_configuration"])["protocols"]]
    assert amplitudes == [0.2, 0.3]

    targets = ours.get_targets_configuration().as_dict()
    assert canon(result(ref["get_targets_configuration"])) == canon(
        {k: v for k, v in targets.items() if k not in ("emodel", "ttype")})

    assert_same_settings(result(ref["pipeline_settings"]), ours.pipeline_settings.as_dict())


def test_reference_reads_our_recipes(exchange: dict[str, Any]) -> None:
    """Recipes we add (default and explicit settings) load in the reference."""
    root = exchange["ours_new"]
    for name in ("second", "third"):
        assert_same_settings(result(exchange["reference"][f"ours_{name}"]["pipeline_settings"]),
                             LocalAccessPoint(name, emodel_dir=root).pipeline_settings.as_dict())
    third = result(exchange["reference"]["ours_third"]["pipeline_settings"])
    assert (third["optimiser"], third["max_ngen"], third["validation_threshold"]) == (
        "SO-CMA", 7, 12.5)
    second = result(exchange["reference"]["ours_second"]["get_model_configuration"])
    ours = LocalAccessPoint("second", emodel_dir=root, **META_OURS).get_model_configuration()
    assert reference_parameters(second) == our_parameters(ours)


def test_reference_loses_unused_distribution(exchange: dict[str, Any]) -> None:
    """The reference writes only distributions some parameter uses: the fixture's ``decay``
    (used by none, but with a parameter of its own) is lost, and we refuse the result with
    an error naming it rather than guess its function."""
    ref_config = result(exchange["reference"]["ours_new"]["get_model_configuration"])
    written = ref_config["as_dict"]  # what its store_model_configuration would write
    assert "decay" not in {d["name"] for d in written["distributions"]}
    with pytest.raises(ConfigurationError, match=r"parameters\[2\]\.location: .*'decay'"):
        parse_model(ModelConfiguration, written, "config/params/ref.json")


# -- we read what the reference wrote ---------------------------------------------------------


def test_we_read_reference_final_json(exchange: dict[str, Any]) -> None:
    root = exchange["ref_legacy"]
    ref = exchange["reference"]["ref_legacy"]
    assert result(ref["store_emodels"]) == [m["seed"] for m in REF_MODELS]
    result(ref["save_final"])
    ours = LocalAccessPoint(EMODEL, emodel_dir=root, **META_REF)
    assert canon(ours.get_final()) == canon(result(ref["get_final"]))
    assert ours.final_store.recovery_path.is_file()  # the reference's final_tmp.json

    models = ours.get_emodels()
    assert [m.seed for m in models] == [m["seed"] for m in REF_MODELS]
    for model, spec in zip(models, REF_MODELS):
        assert model.key == final_key(EMODEL, "it2", spec["seed"])
        assert model.score == pytest.approx(sum(spec["scores"].values()))
        assert model.fitness == spec["scores"]
        assert model.parameters == spec["parameters"]
        assert canon(model.features) == canon(spec["features"])
        assert model.validation_fitness == spec["scores_validation"]
        assert model.validated is spec["passed_validation"]
        assert model.pdfs == []
        assert model.metadata_dict() == {
            "emodel": EMODEL, "ttype": None, "iteration": "it2",
            **{k: v for k, v in META_REF.items() if k != "iteration_tag"}}
    assert [ours.has_best_model(s) for s in (11, 12, 13, 14, 15)] == [True] * 4 + [False]
    assert [ours.is_checked_by_validation(s) for s in (11, 12, 13, 14)] == [
        False, True, True, True]
    assert ours.is_validated()  # seeds 12 and 14; n_model is 2
    assert ours.get_emodel().seed == 12  # the lowest score

    # save_final: a legacy bare-name entry next to the others, in another file.
    saved = LocalAccessPoint(EMODEL, emodel_dir=root, final_path="final_legacy.json", **META_REF)
    legacy = saved.get_emodel()
    assert (legacy.seed, legacy.iteration, legacy.parameters, legacy.score, legacy.validated) == (
        7, "it0", {"g_pas.all": 4e-5}, 2.5, True)
    assert [m.seed for m in saved.get_emodels()] == [11, 12, 13, 14]
    assert (root / "final_legacy_tmp.json").is_file()


@pytest.mark.parametrize("layout", ["ref_legacy", "ref_new"])
def test_we_read_reference_configurations(exchange: dict[str, Any], layout: str) -> None:
    """What the reference read and rewrote (new format) reads back equal to the original."""
    root = exchange[layout]
    ref = exchange["reference"][layout]
    before = exchange[f"{layout}_before"]
    meta = META_REF if layout == "ref_legacy" else META_OURS

    written = json.loads((root / "config" / "params" / "ref.json").read_text())
    assert written == result(ref["get_model_configuration"])["as_dict"]
    model = parse_model(ModelConfiguration, written, "config/params/ref.json")
    assert our_parameters(model) == our_parameters(before["model"])
    assert ("gnabar_nakx", "somaxon", [0.05, 0.3], "decay", "nakx") in our_parameters(model)
    assert sorted_distributions(model.distributions) == sorted_distributions(
        before["model"].distributions)
    assert {(m.name, m.location) for m in model.mechanisms} == {
        (m.name, m.location) for m in before["model"].mechanisms}
    if layout == "ref_new":
        # The reference reads soma_ref_location into morphology_dependent_parameters and
        # writes it there; we recover it.
        exp = next(d for d in written["distributions"] if d["name"] == "exp")
        assert (exp["soma_ref_location"], exp["morphology_dependent_parameters"]) == (0.5, 0.25)
        assert model.distribution("exp").soma_ref_location == 0.25

    # Its recipe entry pointing at these files loads in ours.
    added = LocalAccessPoint("refadded", emodel_dir=root, **meta)
    config = added.get_model_configuration()
    assert our_parameters(config) == our_parameters(before["model"])
    assert config.morphology.name == "tiny_cell"

    ours = LocalAccessPoint(EMODEL, emodel_dir=root, **meta)
    # The files now hold what the reference wrote (the new format for the features).
    features_file = json.loads(added.get_json_path("features").read_text())
    assert canon(features_file) == canon(
        result(ref["get_fitness_calculator_configuration"])["as_dict"])
    targets_file = json.loads(ours._targets_path().read_text())
    assert canon(targets_file) == canon(
        {"emodel": EMODEL, "ttype": None, **result(ref["get_targets_configuration"])})
    assert ours.get_fitness_calculator_configuration() == before["fitness"]
    assert added.get_fitness_calculator_configuration().objective_names == [
        "Step_200.soma.v.Spikecount", "Step_200.soma.v.voltage_base",
        "Step_300.soma.v.Spikecount"]
    assert ours.get_targets_configuration() == before["targets"]


def test_we_read_reference_recipes(exchange: dict[str, Any]) -> None:
    """Recipes the reference adds (its default settings, explicit settings) load in ours."""
    root = exchange["ref_legacy"]
    result(exchange["reference"]["ref_legacy"]["add_entry_recipes"])
    result(exchange["reference"]["ref_legacy"]["add_entry_recipes#2"])
    ref_defaults = result(exchange["reference"]["ref_legacy_added"]["pipeline_settings"])
    defaults = LocalAccessPoint("refadded", emodel_dir=root).pipeline_settings
    assert_same_settings(ref_defaults, defaults.as_dict())
    explicit = LocalAccessPoint("refadded2", emodel_dir=root).pipeline_settings
    assert (explicit.optimiser, explicit.max_ngen, explicit.n_model) == ("SO-CMA", 7, 1)
    assert explicit.validation_protocols == ["Step_300"]
    recipes = json.loads((root / "recipes.json").read_text())
    assert recipes["refadded"]["morphology"] == [["tiny_cell", "tiny_cell.swc"]]
    assert recipes["refadded"]["protocol"] is None


def test_reference_python_is_found_as_documented(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """The variable wins; a path that is not an executable file means "not available"."""
    monkeypatch.setenv("LUIGI_EMODEL_REFERENCE_PYTHON", sys.executable)
    assert reference_python() == Path(sys.executable)
    monkeypatch.setenv("LUIGI_EMODEL_REFERENCE_PYTHON", str(tmp_path / "missing" / "python"))
    assert reference_python() is None
    monkeypatch.delenv("LUIGI_EMODEL_REFERENCE_PYTHON")
    assert reference_python() == (
        DEFAULT_REFERENCE_PYTHON if DEFAULT_REFERENCE_PYTHON.is_file() else None)
