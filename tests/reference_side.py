"""The reference's side of the compatibility test: run by the python of the reference's venv.

Reads a JSON batch on stdin, runs every step with BluePyEModel's own LocalAccessPoint and
prints one JSON document on stdout: ``{"version": ..., "jobs": [[step results]]}``.

Batch format::

    {"jobs": [{"root": "/abs/run/root", "emodel": "cADtest",
               "access_point": {"species": "rat", "iteration_tag": "it1", ...},
               "steps": [{"op": "get_emodels"}, {"op": "has_best_model", "seeds": [1, 2]},
                         ...]}]}

Each job runs with the working directory set to its run root, because the reference creates
its ``.tmp/`` lock folder there and resolves several paths against it. Each step gives
``{"result": ...}``, or ``{"error": "<type>: <message>"}`` if it raised, so that the test can
tell which call failed. Only the standard library, bluepyemodel and this folder's
fitness_view.py (standard library only) may be imported here.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from bluepyemodel.access_point.local import LocalAccessPoint
from bluepyemodel.emodel_pipeline.emodel import EModel
from fitness_view import fitness_view  # this folder, first on sys.path


def _plain(value: Any) -> Any:
    """A JSON-ready copy (numpy scalars, tuples and paths made plain)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _model(model: EModel) -> dict[str, Any]:
    return {
        "seed": model.seed,
        "fitness": model.fitness,
        "scores": dict(model.scores),
        "parameters": dict(model.parameters),
        "features": dict(model.features),
        "scores_validation": dict(model.scores_validation),
        "passed_validation": model.passed_validation,
        "threshold_data": dict(model.threshold_data),
        "metadata": dict(vars(model.emodel_metadata)),
    }


def _model_configuration(ap: LocalAccessPoint, step: dict[str, Any]) -> dict[str, Any]:
    config = ap.get_model_configuration()
    if step.get("store_path"):
        config_path = Path(step["store_path"])
        ap.store_model_configuration(config, path=config_path)
    return {
        "as_dict": config.as_dict(),
        "parameters": [
            {"name": p.name, "location": p.location, "value": p.value,
             "distribution": p.distribution, "mechanism": p.mechanism}
            for p in config.parameters
        ],
        "mechanisms": [{"name": m.name, "location": m.location} for m in config.mechanisms],
        "distributions": [d.as_dict() for d in config.distributions],
    }


def _fitness_configuration(ap: LocalAccessPoint, step: dict[str, Any]) -> dict[str, Any]:
    config = ap.get_fitness_calculator_configuration()
    if step.get("store"):
        ap.store_fitness_calculator_configuration(config)
    return {"as_dict": config.as_dict(), **fitness_view(config)}


def _targets_configuration(ap: LocalAccessPoint, step: dict[str, Any]) -> dict[str, Any]:
    config = ap.get_targets_configuration()
    if step.get("store"):
        ap.store_targets_configuration(config)
    return config.as_dict()


def _store_emodels(ap: LocalAccessPoint, step: dict[str, Any]) -> list[int]:
    for spec in step["models"]:
        ap.store_emodel(EModel(
            fitness=sum(spec["scores"].values()),
            parameter=spec["parameters"],
            score=spec["scores"],
            features=spec.get("features"),
            scoreValidation=spec.get("scores_validation"),
            passedValidation=spec.get("passed_validation"),
            seed=spec["seed"],
            emodel_metadata=ap.emodel_metadata,
        ))
    return [spec["seed"] for spec in step["models"]]


def _save_final(ap: LocalAccessPoint, step: dict[str, Any]) -> dict[str, Any]:
    final = ap.get_final()
    final.update(step.get("add", {}))
    ap.save_final(final, Path(step["path"]))
    return final


def _add_entry_recipes(ap: LocalAccessPoint, step: dict[str, Any]) -> None:
    LocalAccessPoint.add_entry_recipes(**step["kwargs"])


OPS: dict[str, Callable[[LocalAccessPoint, dict[str, Any]], Any]] = {
    "get_emodels": lambda ap, s: [_model(m) for m in ap.get_emodels(s.get("emodels"))],
    "get_final": lambda ap, s: ap.get_final(),
    "get_emodel_names": lambda ap, s: ap.get_emodel_names(),
    "has_best_model": lambda ap, s: [ap.has_best_model(seed) for seed in s["seeds"]],
    "is_checked_by_validation": lambda ap, s: [
        ap.is_checked_by_validation(seed) for seed in s["seeds"]],
    "is_validated": lambda ap, s: ap.is_validated(),
    "pipeline_settings": lambda ap, s: dict(vars(ap.pipeline_settings)),
    "get_model_configuration": _model_configuration,
    "get_fitness_calculator_configuration": _fitness_configuration,
    "get_targets_configuration": _targets_configuration,
    "store_emodels": _store_emodels,
    "save_final": _save_final,
    "add_entry_recipes": _add_entry_recipes,
}


def run_step(ap: LocalAccessPoint, step: dict[str, Any]) -> Any:
    """``{"result": ...}`` of one step, or ``{"error": ...}`` if it raised."""
    try:
        return {"result": _plain(OPS[step["op"]](ap, step))}
    except Exception as error:  # reported to the test, which decides what is expected
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(error).__name__}: {error}"}


def run_job(job: dict[str, Any]) -> list[Any]:
    """Every step of one job, in order, with the working directory at its run root."""
    os.chdir(job["root"])
    results: list[Any] = []
    try:
        ap = LocalAccessPoint(job["emodel"], emodel_dir=job["root"], **job.get("access_point", {}))
    except Exception as error:
        traceback.print_exc(file=sys.stderr)
        failed = {"error": f"{type(error).__name__}: {error}"}
        return [failed for _ in job["steps"]]
    for step in job["steps"]:
        results.append(run_step(ap, step))
    return results


def main() -> None:
    batch = json.load(sys.stdin)
    # The reference prints and logs as it goes: keep stdout for our one JSON document.
    with contextlib.redirect_stdout(sys.stderr):
        jobs = [run_job(job) for job in batch["jobs"]]
    out = {"version": importlib.metadata.version("bluepyemodel"), "jobs": jobs}
    # NaN is legitimate in final.json features: keep Python's JSON extension for it.
    json.dump(out, sys.stdout, allow_nan=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
