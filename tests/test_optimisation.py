"""Optimisation on a ground-truth model: IBEA, SO-CMA, MO-CMA; resume after SIGKILL; stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from science_project import EMODEL, TRUE_PARAMETERS, ground_truth_features, make_hh_project
from luigi_emodel import LocalAccessPoint, OptimisationError, OptimisationState
from luigi_emodel.science.evaluator import build_evaluator
from luigi_emodel.science.optimisation import (
    read_checkpoint,
    run_optimisation,
    split_evaluations,
    store_best_model,
)

CHILD = Path(__file__).parent / "_optimise_child.py"


@pytest.fixture(scope="module")
def truth_features(tmp_path_factory) -> dict:
    root = make_hh_project(tmp_path_factory.mktemp("truth"))
    evaluator = build_evaluator(LocalAccessPoint(EMODEL, emodel_dir=root))
    result = evaluator.evaluate(TRUE_PARAMETERS)
    assert result.failed is None
    return ground_truth_features(result.features)


def project(root: Path, truth_features: dict, **settings) -> LocalAccessPoint:
    make_hh_project(root, features=truth_features, **settings)
    return LocalAccessPoint(EMODEL, emodel_dir=root)


def test_ibea_recovers_ground_truth(tmp_path: Path, truth_features: dict) -> None:
    ap = project(tmp_path, truth_features, max_ngen=10, optimisation_params={"offspring_size": 16})
    evaluator = build_evaluator(ap)
    true_score = evaluator.evaluate(TRUE_PARAMETERS).total
    generations: list[int] = []
    outcome = run_optimisation(ap, seed=3, evaluator=evaluator,
                               progress=lambda g, m, b: generations.append(g))
    assert outcome.completed and outcome.generation == 10
    assert generations == list(range(2, 11))
    assert ap.optimisation_state(seed=3) is OptimisationState.COMPLETED
    store_best_model(ap, seed=3, evaluator=evaluator)
    [model] = ap.get_emodels()
    assert model.seed == 3 and model.validated is None
    assert set(model.parameters) == set(TRUE_PARAMETERS)
    assert model.score == pytest.approx(sum(model.fitness.values()))
    assert set(model.fitness) == set(evaluator.objective_names)
    # The stored scores are those of the optimisation: re-simulating gives the same.
    assert evaluator.evaluate(model.parameters).total == pytest.approx(model.score, rel=1e-9)
    assert model.score <= 2 * true_score, (model.score, true_score)


@pytest.mark.parametrize("optimiser", ["SO-CMA", "MO-CMA"])
def test_cma_runs_and_resumes_with_larger_max_ngen(tmp_path: Path, truth_features: dict,
                                                   optimiser: str) -> None:
    ap = project(tmp_path, truth_features, optimiser=optimiser, max_ngen=2,
                 optimisation_params={"offspring_size": 6})
    first = run_optimisation(ap, seed=1)
    assert first.completed
    assert ap.optimisation_state(seed=1) is OptimisationState.COMPLETED
    # A larger budget turns the completed run into one in progress, which then continues.
    ap = project(tmp_path, truth_features, optimiser=optimiser, max_ngen=4,
                 optimisation_params={"offspring_size": 6})
    assert ap.optimisation_state(seed=1) is OptimisationState.IN_PROGRESS
    second = run_optimisation(ap, seed=1)
    assert second.completed and second.generation > first.generation
    assert second.best_score <= first.best_score


@pytest.mark.parametrize("optimiser", ["IBEA", "SO-CMA"])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path, truth_features: dict,
                                                  optimiser: str) -> None:
    settings = {"optimiser": optimiser, "max_ngen": 5, "optimisation_params": {"offspring_size": 6}}
    straight = project(tmp_path / "straight", truth_features, **settings)
    run_optimisation(straight, seed=7)
    killed_root = tmp_path / "killed"
    killed = project(killed_root, truth_features, **settings)
    with subprocess.Popen([sys.executable, str(CHILD), str(killed_root), "7"],
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:  # kill right after generation 3 is committed
            if line.strip() == "gen 3":
                os.kill(child.pid, signal.SIGKILL)
                break
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert killed.optimisation_state(seed=7) is OptimisationState.IN_PROGRESS
    resumed = run_optimisation(killed, seed=7)
    assert resumed.completed
    a = read_checkpoint(straight.checkpoint_path(7))
    b = read_checkpoint(killed.checkpoint_path(7))
    assert a["generation"] == b["generation"]
    assert list(a["halloffame"][0]) == list(b["halloffame"][0])
    assert a["halloffame"][0].fitness.values == b["halloffame"][0].fitness.values


def test_stop_request_ends_at_generation_boundary(tmp_path: Path, truth_features: dict) -> None:
    ap = project(tmp_path, truth_features, max_ngen=6, optimisation_params={"offspring_size": 6})
    result = subprocess.run([sys.executable, str(CHILD), str(tmp_path), "2", "--stop-after", "3"],
                            capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip().splitlines()[-1] == "done False 3"
    assert ap.optimisation_state(seed=2) is OptimisationState.IN_PROGRESS
    progress = json.loads(ap.optimisation_progress_path(2).read_text())
    assert progress["generation"] == 3 and progress["completed"] is False
    assert read_checkpoint(ap.checkpoint_path(2))["generation"] == 3
    outcome = run_optimisation(ap, seed=2)
    assert outcome.completed and outcome.generation == 6
    assert not list(ap.checkpoint_path(2).parent.glob("*.staging.pkl*"))


def test_checkpoint_of_another_configuration_refused(tmp_path: Path,
                                                     truth_features: dict) -> None:
    ap = project(tmp_path, truth_features, max_ngen=1, optimisation_params={"offspring_size": 4})
    ap.store_emodel({"emodel": EMODEL, "seed": 9, "parameters": {}, "fitness": {"x": 1.0}})
    final_before = ap.final_path.read_bytes()
    assert run_optimisation(ap, seed=1).completed  # one generation: a checkpoint all the same
    old_checkpoint = ap.checkpoint_path(1).read_bytes()
    # The model gains a free parameter: the checkpoint no longer fits.
    params = json.loads((tmp_path / "config/params/hh.json").read_text())
    params["parameters"].append({"name": "gl_hh", "value": [1e-4, 5e-4], "location": "somaxon"})
    (tmp_path / "config/params/hh.json").write_text(json.dumps(params))
    ap = LocalAccessPoint(EMODEL, emodel_dir=tmp_path)
    with pytest.raises(OptimisationError, match="checkpoint of another configuration"):
        store_best_model(ap, seed=1)
    # An unfinished checkpoint of the old configuration is not resumed either.
    ap.optimisation_progress_path(1).unlink()
    assert ap.optimisation_state(seed=1) is OptimisationState.IN_PROGRESS
    with pytest.raises(OptimisationError, match="gl_hh"):
        run_optimisation(ap, seed=1)
    assert ap.checkpoint_path(1).read_bytes() == old_checkpoint
    assert ap.final_path.read_bytes() == final_before


def test_store_best_model_without_checkpoint(tmp_path: Path, truth_features: dict) -> None:
    ap = project(tmp_path, truth_features)
    with pytest.raises(OptimisationError, match="no checkpoint for seed 4"):
        store_best_model(ap, seed=4)
    assert not ap.final_path.exists()


def test_split_map_sends_protocols_and_returns_whole_evaluations(tmp_path: Path,
                                                                 truth_features: dict) -> None:
    import functools

    ap = project(tmp_path, truth_features)
    evaluator = build_evaluator(ap)
    mapped: list[tuple] = []

    def spying_map(func, items):
        items = list(items)
        mapped.append((getattr(func, "__name__", func), items))
        return list(map(func, items))

    split_map = split_evaluations(spying_map, evaluator)
    individuals = [[TRUE_PARAMETERS[n] for n in evaluator.param_names],
                   [TRUE_PARAMETERS[n] * 1.3 for n in evaluator.param_names]]
    # As DEAP calls it: a partial of the bound method.
    evaluate = functools.partial(evaluator.init_simulator_and_evaluate_with_lists)
    scores = split_map(evaluate, iter(individuals))
    assert scores == [evaluator.evaluate_with_lists(i) for i in individuals]
    ((name, items),) = mapped
    assert name == "evaluate_part"
    assert items == [(i, k) for i in individuals for k in range(evaluator.parts)]
    # Anything else is mapped as it comes.
    mapped.clear()
    assert split_map(abs, [-1, 2]) == [1, 2] and mapped == [("abs", [-1, 2])]
