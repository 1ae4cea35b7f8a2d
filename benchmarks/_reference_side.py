"""The reference's side of ``benchmarks/reference.py``: run by the python of the reference's venv.

Reads one JSON job on stdin, does it with BluePyEModel 1.0.50 and prints one JSON document
on the last line of stdout. Only the standard library and bluepyemodel (with its own
dependencies) may be imported here; bluepyemodel is imported inside each job, after the job
has prepared the working directory (NEURON loads ``./x86_64`` when it is first imported).

The caller always starts this script with the working directory set to a scratch folder:
the reference's ``LocalAccessPoint`` creates its lock folder ``.tmp/`` there.

Jobs (``{"op": ..., ...}``):

``access_point``
    ``root``, ``count`` (models in final.json), ``metadata``, ``template`` (a stored model:
    parameters, fitness, features, validation_fitness), ``first_new_seed``, ``budget``
    (seconds per call kind) and ``max_calls`` per call kind. Times ``has_best_model``,
    ``get_emodels`` and ``store_emodel`` on one access point.
``checks``
    ``metadata``, ``checks`` (a list of ``[kind, seed]``, kind one of ``best_model``,
    ``validation``, ``export``): each check builds a fresh access point with the arguments
    the reference's ``WorkflowTarget`` gives it (``EmodelAPIConfig`` defaults, local API) and
    asks what the matching target's ``exists()`` asks.
``writer``
    ``root``, ``metadata``, ``template``, ``seeds``, ``ready`` and ``go`` (paths): build an
    access point on ``root``, create ``ready``, wait for ``go``, then store every seed,
    counting the stores that raise.
``e2e``
    ``emodel`` and ``seed``: ``nrnivmodl mechanisms`` in the working directory, then the steps
    of ``EModel_pipeline`` (optimise, store_optimisation_results, validation) with the local
    access point and the serial map, each timed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from _timing import access_point_calls, answers_timed  # this folder, first on sys.path


def _access_point(root: str, metadata: dict[str, Any]) -> Any:
    from bluepyemodel.access_point.local import LocalAccessPoint

    return LocalAccessPoint(
        emodel=metadata["emodel"], emodel_dir=root, species=metadata.get("species"),
        brain_region=metadata.get("brain_region"), iteration_tag=metadata.get("iteration_tag"),
        recipes_path="recipes.json", final_path=str(Path(root) / "final.json"),
    )


def _emodel(template: dict[str, Any], seed: int, metadata: Any) -> Any:
    """A model as the reference's optimisation hands it to ``store_emodel``."""
    from bluepyemodel.emodel_pipeline.emodel import EModel

    return EModel(
        fitness=sum(template["fitness"].values()),
        parameter=dict(template["parameters"]),
        score=dict(template["fitness"]),
        features=dict(template["features"]),
        scoreValidation=dict(template["validation_fitness"]),
        passedValidation=template.get("validated"),
        seed=seed,
        emodel_metadata=metadata,
    )


def access_point_job(job: dict[str, Any]) -> dict[str, Any]:
    return access_point_calls(
        job, lambda: _access_point(job["root"], job["metadata"]),
        lambda writer, seed: _emodel(job["template"], seed, writer.emodel_metadata))


def checks_job(job: dict[str, Any]) -> dict[str, Any]:
    from bluepyemodel.access_point import get_access_point

    metadata = job["metadata"]
    # EmodelAPIConfig's defaults with recipes_path set: what WorkflowTarget passes on.
    api_args = {"emodel_dir": "./", "recipes_path": "recipes.json",
                "final_path": "./final.json", "legacy_dir_structure": False}

    def target_access_point() -> Any:
        return get_access_point(
            "local", emodel=metadata["emodel"], etype=metadata.get("etype"),
            ttype=metadata.get("ttype"), mtype=metadata.get("mtype"),
            species=metadata.get("species"), brain_region=metadata.get("brain_region"),
            iteration_tag=metadata.get("iteration_tag"), **api_args,
        )

    def exists(kind: str, seed: int) -> bool:
        ap = target_access_point()
        if kind == "best_model":  # BestModelTarget
            return ap.has_best_model(seed=seed)
        batch = range(seed, seed + ap.pipeline_settings.optimisation_batch_size)
        if kind == "validation":  # ValidationTarget
            return all(ap.is_checked_by_validation(seed=s) for s in batch)
        if kind == "export":  # StoreHocTarget (ExportHoc writes SONATA)
            return all(ap.sonata_exists(seed=s) for s in batch)
        raise ValueError(f"unknown check {kind!r}")

    return answers_timed(job["checks"], exists)


def writer_job(job: dict[str, Any]) -> dict[str, Any]:
    ap = _access_point(job["root"], job["metadata"])
    Path(job["ready"]).touch()
    go = Path(job["go"])
    while not go.exists():
        time.sleep(0.005)
    returned: list[int] = []
    errors: Counter[str] = Counter()
    start = time.perf_counter()
    for seed in job["seeds"]:
        try:
            ap.store_emodel(_emodel(job["template"], seed, ap.emodel_metadata))
        except Exception as error:  # noqa: BLE001 - each failure is counted by its type
            errors[type(error).__name__] += 1
        else:
            returned.append(seed)
    return {"returned": returned, "errors": dict(errors), "wall": time.perf_counter() - start}


def e2e_job(job: dict[str, Any]) -> dict[str, Any]:
    steps: dict[str, float] = {}
    start = time.perf_counter()
    nrnivmodl = Path(sys.executable).with_name("nrnivmodl")
    compiled = subprocess.run([str(nrnivmodl), "mechanisms"], capture_output=True, text=True)
    if compiled.returncode:
        raise RuntimeError(f"nrnivmodl mechanisms failed:\n{compiled.stderr[-3000:]}")
    steps["nrnivmodl mechanisms"] = time.perf_counter() - start

    mark = time.perf_counter()
    # EModel_pipeline's module imports the Nexus access point (PyJWT, nexusforge and
    # entity_management, the "nexus" extra, which the plain install lacks): call the functions
    # its optimise / store_optimisation_results / validation methods call, with the
    # arguments it passes for the local access point and no parallel backend.
    from bluepyemodel.access_point import get_access_point
    from bluepyemodel.optimisation import setup_and_run_optimisation, store_best_model
    from bluepyemodel.validation.validation import validate

    steps["imports"] = time.perf_counter() - mark
    mark = time.perf_counter()
    ap = get_access_point("local", emodel=job["emodel"], recipes_path="recipes.json",
                          final_path="final.json")
    setup_and_run_optimisation(ap, seed=job["seed"], mapper=map, terminator=None)
    steps["optimise"] = time.perf_counter() - mark
    mark = time.perf_counter()
    store_best_model(access_point=ap, seed=job["seed"])
    steps["store_optimisation_results"] = time.perf_counter() - mark
    mark = time.perf_counter()
    validate(access_point=ap, mapper=map, preselect_for_validation=False)
    steps["validation"] = time.perf_counter() - mark
    final = json.loads(Path("final.json").read_text())
    entry = final[ap.get_model_name_for_final(job["seed"])]
    return {"steps": steps, "score": entry["score"], "validated": entry["validated"],
            "max_score": max(list(entry["fitness"].values())
                             + list(entry["validation_fitness"].values()))}


JOBS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "access_point": access_point_job,
    "checks": checks_job,
    "writer": writer_job,
    "e2e": e2e_job,
}


def main() -> int:
    job = json.loads(sys.stdin.read())
    try:
        import importlib.metadata

        result = JOBS[job["op"]](job)
        result["version"] = importlib.metadata.version("bluepyemodel")
    except Exception:  # noqa: BLE001 - the caller shows the traceback
        print(json.dumps({"error": traceback.format_exc()}))
        return 1
    sys.stdout.flush()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
