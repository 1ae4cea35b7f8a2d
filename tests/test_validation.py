"""Validation of stored models on the Hodgkin-Huxley ground-truth project.

The project's targets are the features of the true parameters, on three step protocols used
for optimisation plus one threshold-based validation protocol (so validation has to run the
pre-protocols, which optimisation never does here). Two models are stored: the truth (seed 1)
and a bad parameter set (seed 2).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import science_project as sp

from luigi_emodel import LocalAccessPoint
from luigi_emodel.exceptions import ConfigurationError, StorageError
from luigi_emodel.schemas.stored_model import StoredModel
from luigi_emodel.science.evaluator import THRESHOLD_KEYS, build_evaluator
from luigi_emodel.science.validation import validate

BAD_PARAMETERS = {"gnabar_hh.somaxon": 0.06, "gkbar_hh.somaxon": 0.07, "g_pas.alldend": 1.5e-4}
VALIDATION_PROTOCOL = sp.VALIDATION_PROTOCOL
THRESHOLD = 50.0


def features_config(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The hh targets plus a threshold-based validation protocol; placeholder means without
    ``values``, else the given feature values as means."""
    config = sp.with_validation_protocol(sp.placeholder_features())
    return config if values is None else sp.ground_truth_features(values, config=config)


class Project:
    """What the module fixture computed once: the run root and reference evaluations."""

    def __init__(self, root: Path, targets: dict[str, Any]) -> None:
        self.root = root
        self.targets = targets
        ap = LocalAccessPoint(sp.EMODEL, emodel_dir=root)
        optimisation = build_evaluator(ap)
        # What optimisation would have stored: scores of the optimisation objectives only.
        self.fitness = {seed: optimisation.evaluate(params).scores
                        for seed, params in ((1, sp.TRUE_PARAMETERS), (2, BAD_PARAMETERS))}
        # The full evaluation of the bad model, validation protocol included.
        self.bad_full = build_evaluator(ap, include_validation=True).evaluate(BAD_PARAMETERS)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("hh_validation")
    sp.make_hh_project(root, features=features_config())
    truth = build_evaluator(LocalAccessPoint(sp.EMODEL, emodel_dir=root),
                            include_validation=True).evaluate(sp.TRUE_PARAMETERS)
    targets = features_config(truth.features)
    sp.make_hh_project(root, features=targets, validation_threshold=THRESHOLD)
    return Project(root, targets)


def access_point(project: Project, root: Path, **settings: Any) -> LocalAccessPoint:
    """A copy of the project in ``root`` with both models stored (not yet validated)."""
    shutil.copytree(project.root, root, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("final*.json", "export_*"))
    sp.make_hh_project(root, features=project.targets,
                       **{"validation_threshold": THRESHOLD, **settings})
    ap = LocalAccessPoint(sp.EMODEL, emodel_dir=root)
    for seed, params in ((1, sp.TRUE_PARAMETERS), (2, BAD_PARAMETERS)):
        ap.store_emodel(StoredModel.from_result(ap.emodel_metadata, seed, params,
                                                project.fitness[seed]))
    return ap


class CountingMap:
    """``map`` that counts the evaluations it runs."""

    def __init__(self) -> None:
        self.evaluations = 0

    def __call__(self, function: Any, items: Any) -> list[Any]:
        items = list(items)
        self.evaluations += len(items)
        return [function(item) for item in items]


def stored(ap: LocalAccessPoint, seed: int) -> dict[str, Any]:
    """The entry as it is on disk."""
    final = json.loads(ap.final_path.read_text())
    return final[ap.get_model_name_for_final(seed)]


def test_validate_truth_passes_bad_fails_and_fills_the_entry(project: Project,
                                                             tmp_path: Path) -> None:
    ap = access_point(project, tmp_path)
    counter = CountingMap()
    models = validate(ap, map_function=counter)
    assert counter.evaluations == 2
    assert {m.seed: m.validated for m in models} == {1: True, 2: False}

    validation_objectives = {f"{VALIDATION_PROTOCOL}.soma.v.{name}" for name in sp.FEATURES}
    all_objectives = {f"{e['protocol_name']}.soma.v.{e['efel_feature_name']}"
                      for e in project.targets["efeatures"]}
    assert validation_objectives < all_objectives
    for seed in (1, 2):
        entry = stored(ap, seed)
        assert entry["validated"] is (seed == 1)
        # Validation scores hold the validation protocol's objectives, and only them.
        assert set(entry["validation_fitness"]) == validation_objectives
        assert set(entry["fitness"]) == all_objectives - validation_objectives
        # The same simulation as during optimisation gives the same scores.
        assert entry["fitness"] == pytest.approx(project.fitness[seed], abs=1e-9)
        assert entry["score"] == pytest.approx(sum(entry["fitness"].values()))
        assert set(entry["features"]) == all_objectives
        # The pre-protocols of the threshold-based validation protocol ran.
        assert set(entry["threshold_data"]) == set(THRESHOLD_KEYS)
        assert entry["threshold_data"]["bpo_threshold_current"] > 0
        assert entry["threshold_data"]["bpo_rin"] > 0
    truth = stored(ap, 1)
    assert max(truth["fitness"].values()) < THRESHOLD
    assert max(truth["validation_fitness"].values()) < THRESHOLD
    assert truth["features"]["Step_200.soma.v.Spikecount"] == pytest.approx(
        next(e["mean"] for e in project.targets["efeatures"]
             if e["protocol_name"] == "Step_200" and e["efel_feature_name"] == "Spikecount"))
    bad = stored(ap, 2)
    assert bad["validation_fitness"] == pytest.approx(
        {k: v for k, v in project.bad_full.scores.items() if k in validation_objectives})
    assert bad["threshold_data"] == pytest.approx(project.bad_full.threshold_data)
    assert bad["threshold_data"] != pytest.approx(truth["threshold_data"])

    # Already-checked models are not simulated again, and stay as they are.
    before = ap.final_path.read_bytes()
    again = CountingMap()
    assert validate(ap, map_function=again) == []
    assert again.evaluations == 0
    assert ap.final_path.read_bytes() == before
    assert ap.is_checked_by_validation(1) and ap.is_checked_by_validation(2)


def test_validate_only_the_given_seeds(project: Project, tmp_path: Path) -> None:
    ap = access_point(project, tmp_path)
    counter = CountingMap()
    models = validate(ap, seeds=[2], map_function=counter)
    assert [m.seed for m in models] == [2] and counter.evaluations == 1
    assert stored(ap, 1)["validated"] is None
    assert stored(ap, 2)["validated"] is False
    # Without seeds, only the model left unchecked runs.
    counter = CountingMap()
    models = validate(ap, map_function=counter)
    assert [m.seed for m in models] == [1] and counter.evaluations == 1
    assert stored(ap, 1)["validated"] is True


def test_mean_score_and_max_score_judge_the_same_scores_differently(project: Project,
                                                                    tmp_path: Path) -> None:
    scores = list(project.bad_full.scores.values())
    # A threshold between the bad model's mean and maximum score separates the two rules.
    threshold = (float(np.mean(scores)) + max(scores)) / 2
    assert np.mean(scores) < threshold < max(scores)
    verdicts = {}
    for function in ("max_score", "mean_score"):
        ap = access_point(project, tmp_path / function, validation_function=function,
                          validation_threshold=threshold)
        (model,) = validate(ap, seeds=[2])
        verdicts[function] = model.validated
        assert stored(ap, 2)["validated"] is model.validated
    assert verdicts == {"max_score": False, "mean_score": True}


VERDICT_FILE = '''\
import json
from pathlib import Path


def validation_scores_only(model, threshold, validation_protocols):
    """Judge on the validation protocols' scores alone; record what was received."""
    calls = Path(__file__).with_name("calls.json")
    seen = json.loads(calls.read_text()) if calls.exists() else []
    seen.append({"type": type(model).__name__, "seed": model.seed, "threshold": threshold,
                 "validation_protocols": validation_protocols,
                 "validation_fitness": sorted(model.validation_fitness),
                 "has_threshold_data": bool(model.threshold_data),
                 "validated": model.validated})
    calls.write_text(json.dumps(seen))
    return all(v < threshold for v in model.validation_fitness.values())
'''


def test_validation_function_from_a_file(project: Project, tmp_path: Path) -> None:
    ap = access_point(project, tmp_path,
                      validation_function=["checks/verdict.py", "validation_scores_only"])
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "verdict.py").write_text(VERDICT_FILE)
    (model,) = validate(ap, seeds=[2])
    # The bad model fails max_score (see above) but its validation scores are all low.
    assert max(project.bad_full.scores.values()) >= THRESHOLD
    assert model.validated is True and stored(ap, 2)["validated"] is True
    (call,) = json.loads((tmp_path / "checks" / "calls.json").read_text())
    assert call == {
        "type": "StoredModel", "seed": 2, "threshold": THRESHOLD,
        "validation_protocols": [VALIDATION_PROTOCOL],
        "validation_fitness": sorted(f"{VALIDATION_PROTOCOL}.soma.v.{n}" for n in sp.FEATURES),
        "has_threshold_data": True, "validated": None,
    }


@pytest.mark.parametrize("content, function, expected", [
    (None, "validation_scores_only", "file not found"),
    (VERDICT_FILE, "no_such_function", "defines no 'no_such_function'"),
    ("def broken(:\n", "broken", "cannot be loaded: SyntaxError"),
    ("import no_such_module_here\n", "f", "cannot be loaded: ModuleNotFoundError"),
    ("f = 3\n", "f", "'f' is not a function"),
])
def test_bad_validation_function_is_a_configuration_error(
        project: Project, tmp_path: Path, content: str | None, function: str,
        expected: str) -> None:
    ap = access_point(project, tmp_path, validation_function=["checks/verdict.py", function])
    if content is not None:
        (tmp_path / "checks").mkdir()
        (tmp_path / "checks" / "verdict.py").write_text(content)
    before = ap.final_path.read_bytes()
    counter = CountingMap()
    with pytest.raises(ConfigurationError) as error:
        validate(ap, map_function=counter)
    message = str(error.value)
    assert "checks/verdict.py" in message and repr(function) in message
    assert expected in message
    assert counter.evaluations == 0  # refused before any simulation
    assert ap.final_path.read_bytes() == before


def test_validation_function_raising_is_reported(project: Project, tmp_path: Path) -> None:
    ap = access_point(project, tmp_path, validation_function=["verdict.py", "fails"])
    (tmp_path / "verdict.py").write_text("def fails(model, threshold, protocols):\n"
                                         "    raise KeyError('no such score')\n")
    with pytest.raises(ConfigurationError, match=r"failed on hhcell__2: KeyError"):
        validate(ap, seeds=[2])
    assert stored(ap, 2)["validated"] is None


def test_stored_model_missing_a_free_parameter(project: Project, tmp_path: Path) -> None:
    ap = access_point(project, tmp_path)
    partial = {k: v for k, v in sp.TRUE_PARAMETERS.items() if k != "g_pas.alldend"}
    ap.store_emodel(StoredModel.from_result(ap.emodel_metadata, 3, partial, {}))
    before = ap.final_path.read_bytes()
    counter = CountingMap()
    with pytest.raises(StorageError, match=r"final\.json: hhcell__3\.parameters: missing free "
                                           r"parameter\(s\) \['g_pas\.alldend'\]"):
        validate(ap, map_function=counter)
    assert counter.evaluations == 0
    assert ap.final_path.read_bytes() == before


def test_validate_with_the_multiprocessing_backend(project: Project, tmp_path: Path) -> None:
    """The evaluations travel to worker processes and back, with serial's results."""
    from luigi_emodel.science.mappers import map_backend

    ap = access_point(project, tmp_path)
    with map_backend("multiprocessing", workers=2) as map_function:
        models = validate(ap, map_function=map_function)
    assert {m.seed: m.validated for m in models} == {1: True, 2: False}
    bad = next(m for m in models if m.seed == 2)
    assert {**bad.fitness, **bad.validation_fitness} == pytest.approx(project.bad_full.scores,
                                                                      abs=1e-9)
    assert bad.threshold_data == pytest.approx(project.bad_full.threshold_data)


def test_threshold_data_of_validation_reaches_the_sonata_export(project: Project,
                                                                tmp_path: Path) -> None:
    """Export reads what validation stored (the export itself never simulates)."""
    import h5py

    from luigi_emodel.science.export import export_sonata

    ap = access_point(project, tmp_path)
    (model,) = validate(ap, seeds=[2])
    (folder,) = export_sonata(ap, seeds=[2])
    with h5py.File(folder / "nodes.h5", "r") as handle:
        dynamics = handle["nodes/default_neurons/0/dynamics_params"]
        assert dynamics["threshold_current"][0] == model.threshold_data["bpo_threshold_current"]
        assert dynamics["holding_current"][0] == model.threshold_data["bpo_holding_current"]
