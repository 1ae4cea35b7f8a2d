"""Side by side with the reference (BluePyEModel 1.0.50): the same work through both, as ratios.

Run from the repository root with the project's python::

    .venv/bin/python benchmarks/reference.py              # everything, about 3 minutes
    .venv/bin/python benchmarks/reference.py --quick      # 1,000 models only, no end to end
    .venv/bin/python benchmarks/reference.py --skip-e2e

The reference runs in a virtual environment of its own: ``$LUIGI_EMODEL_REFERENCE_VENV``, or
``~/.cache/luigi_emodel/ref-venv`` (the Makefile's ``REFERENCE_VENV``). If that venv has no
bluepyemodel 1.0.50 the script creates it (``python3 -m venv`` and ``pip install
bluepyemodel==1.0.50``), once. Its side of every measurement is ``_reference_side.py``, run
by the reference's python, always with the working directory set to a scratch run root
(the reference writes its lock folder ``.tmp/`` into the working directory). Our side runs
in child processes of this script (``--child``), so each side starts from a fresh process
and imports are never timed, except in the end-to-end runs, which time whole commands.

Measured:

* **access point**: ``has_best_model``, ``get_emodels`` and ``store_emodel`` on one access
  point, with 1,000 and 10,000 models in final.json (the same file for both: written once,
  copied into each side's run root). Mean per call after one untimed call (stores: none),
  repeated for about a second, fewer calls for the slow ones.
* **completeness checks**: 1,000 checks of a stored best model, a validation verdict and a
  SONATA export (a third each) in a run root with 1,000 validated, exported models, the way
  each system's Luigi targets do them: ours through our target classes (one access point
  per process, ``access_point_for``), the reference's by building a fresh access point per
  check with the arguments its ``WorkflowTarget`` passes and asking what its
  ``BestModelTarget``, ``ValidationTarget`` and ``StoreHocTarget`` ask (its Luigi module
  itself needs bbp-workflow, which is not public).
* **concurrency**: 16 processes store 50 models each into one final.json, each started in a
  working directory of its own (the reference's lock folder is ``./.tmp`` of the working
  directory): stores that raised, and models whose store returned but that are missing
  from final.json at the end.
* **end to end** on ``configs/example`` (same recipe, parameters, morphology, mechanisms and
  features file for both, copied into two scratch run roots): the wall time of
  ``luigi --module luigi_emodel.tasks EModelCreation`` (compile, optimise, store, validate,
  export) against the reference's python pipeline (``nrnivmodl mechanisms``, then the
  optimise, store and validation steps of ``EModel_pipeline``), at the same reduced budget:
  IBEA, 8 offspring, 3 generations, seed 1, one model, serial evaluations.

The script prints one table (ours, theirs, ours / theirs) and exits with status 1 if a goal
is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))  # the test project layout (conftest.make_project)

from conftest import EMODEL, make_project  # noqa: E402

from _timing import access_point_calls, answers_timed, fmt  # noqa: E402  (this folder, first on sys.path)

REFERENCE_VERSION = "1.0.50"
REFERENCE_SIDE = HERE / "_reference_side.py"
DEFAULT_REFERENCE_VENV = Path.home() / ".cache" / "luigi_emodel" / "ref-venv"
EXAMPLE = REPO / "configs" / "example"

METADATA: dict[str, Any] = {"emodel": EMODEL, "etype": None, "ttype": None, "mtype": None,
                            "species": "rat", "brain_region": "SSCX", "iteration_tag": "it1"}
CHECK_KINDS = ("best_model", "validation", "export")
N_CHECKS = 1_000
CHECK_MODELS = 1_000
WRITERS, STORES_PER_WRITER = 16, 50

#: The reduced budget of the end-to-end runs, for both (written into both recipes).
E2E_SETTINGS: dict[str, Any] = {
    "optimiser": "IBEA",
    "optimisation_params": {"offspring_size": 8},
    "max_ngen": 3,
    "n_model": 1,
    "optimisation_batch_size": 1,
    "max_n_batch": 1,
    # BluePyOpt's axon stub in both (the reference's default modifier needs a 3-section axon).
    "morph_modifiers": ["bluepyopt_replace_axon"],
    # Three generations do not reach the example's threshold of 5: raised for both so that
    # the one model of the budget is the first validated model (the work done is the same).
    "validation_threshold": 100.0,
}
E2E_SEED = 1

PROTOCOLS = ["IDrest_130", "IDrest_200", "IDrest_280", "IV_-100", "IV_-40", "APWaveform_360",
             "RMPProtocol", "RinProtocol"]
FEATURES = ["mean_frequency", "AP_amplitude", "AHP_depth", "inv_first_ISI", "time_to_first_spike",
            "voltage_base", "steady_state_voltage_stimend", "ohmic_input_resistance_vb_ssse"]
PARAMETERS = [f"g{i}bar_mech{i % 5}.{loc}" for i, loc in
              enumerate(["somatic", "axonal", "apical", "basal"] * 4)][:15]


# -- shared helpers ------------------------------------------------------------------------------

def template_model() -> dict[str, Any]:
    """A stored model shaped like an optimisation's result: 40 objectives, 15 parameters."""
    objectives = [f"{p}.soma.v.{f}" for p in PROTOCOLS for f in FEATURES][:40]
    return {
        "parameters": {name: 0.0123456789 * (i + 1) for i, name in enumerate(PARAMETERS)},
        "fitness": {name: 0.987654321 * (i % 7) for i, name in enumerate(objectives)},
        "features": {name: -65.4321098765 + i for i, name in enumerate(objectives)},
        "validation_fitness": {f"IDhyperpol_{a}.soma.v.{f}": 0.5
                               for a in (150, 250) for f in FEATURES[:3]},
        "validated": None,
    }


def model(template: dict[str, Any], seed: int, validated: bool | None = None) -> dict[str, Any]:
    return {"emodel": EMODEL, "seed": seed, **template, "validated": validated, "pdfs": []}


def our_access_point(root: Path) -> Any:
    from luigi_emodel import LocalAccessPoint

    return LocalAccessPoint(EMODEL, emodel_dir=root, recipes_path="recipes.json",
                            species=METADATA["species"], brain_region=METADATA["brain_region"],
                            iteration_tag=METADATA["iteration_tag"])


# -- our side (child processes: python reference.py --child < job.json) --------------------------

def ours_access_point(job: dict[str, Any]) -> dict[str, Any]:
    return access_point_calls(job, lambda: our_access_point(Path(job["root"])),
                              lambda writer, seed: model(job["template"], seed))


def ours_checks(job: dict[str, Any]) -> dict[str, Any]:
    # The working directory is the run root, whose luigi.cfg points [EmodelAPIConfig] at it.
    from luigi_emodel.tasks import BestModelTarget, SonataTarget, ValidationTarget

    targets = {"best_model": BestModelTarget, "validation": ValidationTarget,
               "export": SonataTarget}
    metadata = job["metadata"]
    return answers_timed(job["checks"],
                         lambda kind, seed: targets[kind](seed, **metadata).exists())


def ours_writer(job: dict[str, Any]) -> dict[str, Any]:
    ap = our_access_point(Path(job["root"]))
    Path(job["ready"]).touch()
    go = Path(job["go"])
    while not go.exists():
        time.sleep(0.005)
    returned: list[int] = []
    errors: Counter[str] = Counter()
    start = time.perf_counter()
    for seed in job["seeds"]:
        try:
            ap.store_emodel(model(job["template"], seed))
        except Exception as error:  # noqa: BLE001 - each failure is counted by its type
            errors[type(error).__name__] += 1
        else:
            returned.append(seed)
    return {"returned": returned, "errors": dict(errors), "wall": time.perf_counter() - start}


CHILD_JOBS = {"access_point": ours_access_point, "checks": ours_checks, "writer": ours_writer}


def child_main() -> int:
    job = json.loads(sys.stdin.read())
    result = CHILD_JOBS[job["op"]](job)
    sys.stdout.flush()
    print(json.dumps(result))
    return 0


# -- running the two sides -----------------------------------------------------------------------

class Sides:
    """Starts jobs on our side (this script, ``--child``) or the reference's."""

    def __init__(self, reference_python: Path, logs: Path) -> None:
        self.reference_python = reference_python
        self.logs = logs
        self.count = 0

    def command(self, side: str) -> list[str]:
        if side == "ours":
            return [sys.executable, str(Path(__file__).resolve()), "--child"]
        return [str(self.reference_python), str(REFERENCE_SIDE)]

    def start(self, side: str, job: dict[str, Any], cwd: Path) -> tuple[subprocess.Popen, Path]:
        self.count += 1
        log = self.logs / f"{self.count:03d}-{side}-{job['op']}.log"
        env = {k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}
        with log.open("w") as stderr:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(self.command(side), cwd=cwd, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=stderr, text=True,
                                       env=env)
        assert process.stdin is not None
        process.stdin.write(json.dumps(job))
        process.stdin.close()
        return process, log

    @staticmethod
    def result(process: subprocess.Popen, log: Path) -> dict[str, Any]:
        assert process.stdout is not None
        out = process.stdout.read()
        process.wait()
        lines = out.strip().splitlines()
        try:
            result = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"error": f"no result (exit status {process.returncode})"}
        if "error" in result or process.returncode:
            raise RuntimeError(f"{' '.join(map(str, process.args))} failed:\n"
                               f"{result.get('error', '')}\n{log.read_text()[-3000:]}")
        return result

    def run(self, side: str, job: dict[str, Any], cwd: Path) -> dict[str, Any]:
        return self.result(*self.start(side, job, cwd))


def reference_venv() -> Path:
    return Path(os.environ.get("LUIGI_EMODEL_REFERENCE_VENV") or DEFAULT_REFERENCE_VENV)


def reference_version(python: Path) -> str | None:
    if not python.is_file():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('bluepyemodel'))"],
        capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_reference(venv: Path) -> Path:
    """The reference venv's python, after creating the venv if it lacks bluepyemodel 1.0.50."""
    python = venv / "bin" / "python"
    if reference_version(python) == REFERENCE_VERSION:
        return python
    print(f"installing bluepyemodel=={REFERENCE_VERSION} into {venv} (once) ...",
          file=sys.stderr)
    base = shutil.which("python3") or sys.executable
    if not python.is_file():
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                    f"bluepyemodel=={REFERENCE_VERSION}"], check=True)
    (venv / ".installed").touch()
    found = reference_version(python)
    if found != REFERENCE_VERSION:
        raise RuntimeError(f"{python}: bluepyemodel {found} installed, {REFERENCE_VERSION} needed")
    return python


# -- run roots -----------------------------------------------------------------------------------

def populated_root(root: Path, count: int, validated: bool | None,
                   exported: bool = False) -> None:
    """A run root (the test project layout) whose final.json holds ``count`` models, as our
    ``store_emodel`` writes them, with ``optimisation_batch_size`` 1 (so that each of the
    reference's validation and export targets asks about one seed, as each of ours does)."""
    make_project(root)
    recipes = json.loads((root / "recipes.json").read_text())
    recipes[EMODEL]["pipeline_settings"]["optimisation_batch_size"] = 1
    (root / "recipes.json").write_text(json.dumps(recipes, indent=2))
    (root / "luigi.cfg").write_text("[EmodelAPIConfig]\nemodel_dir = .\n"
                                    "recipes_path = recipes.json\n")
    ap = our_access_point(root)
    template = template_model()
    ap.store_emodel(model(template, 0, validated))
    first = json.loads(ap.final_path.read_text())[ap.get_model_name_for_final(0)]
    content = {}
    for seed in range(count):
        entry = {**first, "seed": seed}
        content[ap.get_model_name_for_final(seed)] = entry
    ap.save_final(content)
    if exported:
        for seed in range(count):
            folder = ap.export_dir("sonata", seed)
            folder.mkdir(parents=True)
            (folder / "model.hoc").write_text("// stand-in for an exported model\n")


def twin(root: Path, name: str) -> Path:
    """A copy of a run root for the other side, without our own state files."""
    other = root.with_name(name)
    shutil.copytree(root, other, ignore=shutil.ignore_patterns("*.lock", ".luigi_emodel"))
    return other


# -- the four measurements -----------------------------------------------------------------------

def measure_access_point(sides: Sides, work: Path, count: int) -> dict[str, Any]:
    ours_root = work / f"ap{count}-ours"
    populated_root(ours_root, count, validated=None)
    theirs_root = twin(ours_root, f"ap{count}-theirs")
    slow = count >= 10_000
    job = {
        "op": "access_point", "count": count, "metadata": METADATA, "template": template_model(),
        "first_new_seed": 10_000_000, "budget": 1.0,
        "max_calls": {"has_best_model": 200_000, "get_emodels": 1_000, "store_emodel": 200},
    }
    ours = sides.run("ours", {**job, "root": str(ours_root)}, ours_root)
    # The reference's calls take up to seconds each: a longer budget, a few calls.
    theirs = sides.run("theirs", {
        **job, "root": str(theirs_root), "budget": 10.0 if slow else 2.0,
        "max_calls": {"has_best_model": 5 if slow else 40, "get_emodels": 4 if slow else 20,
                      "store_emodel": 3 if slow else 5},
    }, theirs_root)
    size = ours_root.joinpath("final.json").stat().st_size
    print(f"access point, {count:,} models: done", file=sys.stderr)
    return {"count": count, "size": size, "ours": ours, "theirs": theirs}


def measure_checks(sides: Sides, work: Path) -> dict[str, Any]:
    ours_root = work / "checks-ours"
    populated_root(ours_root, CHECK_MODELS, validated=True, exported=True)
    theirs_root = twin(ours_root, "checks-theirs")
    checks = [[CHECK_KINDS[i % 3], i % CHECK_MODELS] for i in range(N_CHECKS)]
    job = {"op": "checks", "metadata": METADATA, "checks": checks}
    ours = sides.run("ours", job, ours_root)
    theirs = sides.run("theirs", job, theirs_root)
    print("completeness checks: done", file=sys.stderr)
    return {"ours": ours, "theirs": theirs}


def read_final(path: Path) -> tuple[dict[str, Any], str | None]:
    """final.json's content as a reader finds it: the reference falls back to its recovery
    copy ``final_tmp.json`` when final.json does not decode. Also says what went wrong."""
    try:
        return json.loads(path.read_text()), None
    except (OSError, json.JSONDecodeError) as error:
        problem = f"{path.name} unreadable ({type(error).__name__}: {error})"
    recovery = path.with_name(path.stem + "_tmp.json")
    try:
        content = json.loads(recovery.read_text())
    except (OSError, json.JSONDecodeError) as error:
        return {}, f"{problem}; {recovery.name} unreadable too ({type(error).__name__})"
    return content, f"{problem}; models counted in {recovery.name}"


def measure_concurrency(sides: Sides, work: Path, side: str) -> dict[str, Any]:
    root = work / f"writers-{side}"
    make_project(root)
    template = template_model()
    seeds = [list(range(1 + w * STORES_PER_WRITER, 1 + (w + 1) * STORES_PER_WRITER))
             for w in range(WRITERS)]
    go = work / f"writers-{side}.go"
    started = []
    for w in range(WRITERS):
        cwd = work / f"writers-{side}-cwd{w:02d}"
        cwd.mkdir()
        job = {"op": "writer", "root": str(root), "metadata": METADATA, "template": template,
               "seeds": seeds[w], "ready": str(cwd / "ready"), "go": str(go)}
        started.append((sides.start(side, job, cwd), cwd / "ready"))
    deadline = time.monotonic() + 300
    while not all(ready.exists() for _, ready in started):
        if time.monotonic() > deadline or any(p.poll() is not None for (p, _), _ in started):
            break
        time.sleep(0.05)
    start = time.perf_counter()
    go.touch()
    results = [sides.result(*process) for process, _ in started]
    wall = time.perf_counter() - start
    returned = {seed for r in results for seed in r["returned"]}
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    names = {our_access_point(root).get_model_name_for_final(s): s for w in seeds for s in w}
    stored, unreadable = read_final(root / "final.json")
    kept = {names[key] for key in stored if key in names}
    print(f"concurrency, {side}: done", file=sys.stderr)
    return {"raised": sum(errors.values()), "errors": dict(errors),
            "returned": len(returned), "lost": len(returned - kept), "kept": len(kept),
            "unreadable": unreadable, "wall": wall}


def e2e_root(folder: Path, features: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("config", "mechanisms", "morphologies"):
        shutil.copytree(EXAMPLE / name, folder / name)
    recipes = json.loads((EXAMPLE / "recipes.json").read_text())
    recipes["example"]["pipeline_settings"].update(E2E_SETTINGS)
    (folder / "recipes.json").write_text(json.dumps(recipes, indent=2))
    target = folder / recipes["example"]["features"]
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(features, target)
    return target


def example_features(work: Path, luigi: list[str]) -> Path:
    """The example's extracted features file: the bundled one, else our extraction's."""
    recipes = json.loads((EXAMPLE / "recipes.json").read_text())
    bundled = EXAMPLE / recipes["example"]["features"]
    if bundled.is_file():
        return bundled
    if not any((EXAMPLE / "recordings").rglob("*.npz")):
        subprocess.run([sys.executable, str(EXAMPLE / "scripts" / "make_recordings.py")],
                       check=True)
    root = work / "e2e-extraction"
    root.mkdir()
    for name in ("config", "mechanisms", "morphologies", "recordings"):
        if (EXAMPLE / name).is_dir():
            shutil.copytree(EXAMPLE / name, root / name,
                            ignore=shutil.ignore_patterns("features"))
    shutil.copyfile(EXAMPLE / "recipes.json", root / "recipes.json")
    shutil.copyfile(EXAMPLE / "luigi.cfg", root / "luigi.cfg")
    subprocess.run([*luigi, "ExtractEFeatures", "--emodel", "example", "--local-scheduler"],
                   cwd=root, check=True, capture_output=True)
    return root / recipes["example"]["features"]


#: Luigi's console log with time stamps, to split our end-to-end run by task.
LOGGING_CFG = """\
[loggers]
keys=root

[handlers]
keys=console

[formatters]
keys=stamped

[logger_root]
level=INFO
handlers=console

[handler_console]
class=StreamHandler
level=INFO
formatter=stamped
args=(sys.stdout,)

[formatter_stamped]
format=%(asctime)s %(levelname)s: %(message)s
"""

_TASK_LINE = re.compile(r"^(\S+ \S+) INFO: .* (running|done) +(\w+)\(")


def task_times(log: str) -> dict[str, float]:
    """Seconds between each task's "running" and "done" lines, summed per task family."""
    started: dict[str, datetime] = {}
    times: dict[str, float] = {}
    for line in log.splitlines():
        match = _TASK_LINE.match(line)
        if not match:
            continue
        stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")
        if match[2] == "running":
            started[match[3]] = stamp
        elif match[3] in started:
            seconds = (stamp - started.pop(match[3])).total_seconds()
            times[match[3]] = times.get(match[3], 0.0) + seconds
    return times


def measure_e2e(sides: Sides, work: Path) -> dict[str, Any]:
    luigi_cmd = Path(sys.executable).with_name("luigi")
    luigi = [str(luigi_cmd) if luigi_cmd.is_file() else "luigi", "--module", "luigi_emodel.tasks"]
    features = example_features(work, luigi)
    ours_root, theirs_root = work / "e2e-ours", work / "e2e-theirs"
    copies = [e2e_root(ours_root, features), e2e_root(theirs_root, features)]
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in copies}
    assert len(digests) == 1, "the two features files differ"
    (ours_root / "luigi.cfg").write_text(
        "[core]\nlogging_conf_file = logging.cfg\n\n"
        "[EmodelAPIConfig]\nemodel_dir = .\nrecipes_path = recipes.json\n\n"
        "[EvaluationBackendConfig]\nbackend = serial\n")
    (ours_root / "logging.cfg").write_text(LOGGING_CFG)

    env = {k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}
    log = sides.logs / "e2e-ours-luigi.log"
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run([*luigi, "EModelCreation", "--emodel", "example",
                               "--seed", str(E2E_SEED), "--local-scheduler"],
                              cwd=ours_root, env=env, stdout=out, stderr=subprocess.STDOUT)
    ours_wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"our EModelCreation failed (status {done.returncode}):\n"
                           f"{log.read_text()[-3000:]}")
    final = json.loads((ours_root / "final.json").read_text())
    entry = final[f"example__{E2E_SEED}"]
    ours = {"wall": ours_wall, "score": entry["score"], "validated": entry["validated"],
            "max_score": max(list(entry["fitness"].values())
                             + list(entry["validation_fitness"].values())),
            "steps": task_times(log.read_text())}
    print("end to end, ours: done", file=sys.stderr)

    start = time.perf_counter()
    theirs = sides.run("theirs", {"op": "e2e", "emodel": "example", "seed": E2E_SEED},
                       theirs_root)
    theirs["wall"] = time.perf_counter() - start
    print("end to end, theirs: done", file=sys.stderr)
    return {"ours": ours, "theirs": theirs, "features_sha256": digests.pop()[:16]}


# -- the table -----------------------------------------------------------------------------------

def timed(value: dict[str, float]) -> str:
    return f"{fmt(value['wall'])} ({fmt(value['cpu'])})"


def ratio(ours: float, theirs: float) -> str:
    if theirs == 0:
        return "—"
    value = ours / theirs
    return f"{value:.4f}" if value < 0.01 else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1,000 stored models only, and no end-to-end run")
    parser.add_argument("--skip-e2e", action="store_true", help="no end-to-end run")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch folder (run roots and logs) and print its path")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main()

    python = ensure_reference(reference_venv())
    sizes = [1_000] if args.quick else [1_000, 10_000]
    work = Path(tempfile.mkdtemp(prefix="bench-reference-"))
    logs = work / "logs"
    logs.mkdir()
    sides = Sides(python, logs)
    try:
        access = [measure_access_point(sides, work, n) for n in sizes]
        checks = measure_checks(sides, work)
        writers = {side: measure_concurrency(sides, work, side) for side in ("ours", "theirs")}
        e2e = None if (args.quick or args.skip_e2e) else measure_e2e(sides, work)
    finally:
        if args.keep:
            print(f"scratch folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    rows: list[tuple[str, str, str, str, str]] = []
    missed: list[str] = []

    def goal(name: str, value: float, limit: float) -> str:
        met = value <= limit
        if not met:
            missed.append(name)
        return f"≤ {limit:g} ({'met' if met else 'MISSED'})"

    for a in access:
        n, o, t = a["count"], a["ours"], a["theirs"]
        for call in ("has_best_model", "get_emodels", "store_emodel"):
            r = o[call]["wall"] / t[call]["wall"]
            target = (goal(f"{call} at {n:,}", r, 0.05)
                      if n == 10_000 and call != "store_emodel" else "")
            rows.append((f"{call}, {n:,} models ({a['size'] / 1e6:.1f} MB)", timed(o[call]),
                         timed(t[call]), ratio(o[call]["wall"], t[call]["wall"]), target))
        if o["get_emodels"]["models"] != t["get_emodels"]["models"]:
            missed.append(f"get_emodels at {n:,}: {o['get_emodels']['models']} models (ours) "
                          f"vs {t['get_emodels']['models']} (theirs)")
    o, t = checks["ours"], checks["theirs"]
    r = o["wall"] / t["wall"]
    rows.append((f"{N_CHECKS:,} completeness checks ({CHECK_MODELS:,} models)", timed(o),
                 timed(t), ratio(o["wall"], t["wall"]), goal("checks", r, 0.1)))
    if o["answers"] != t["answers"]:
        missed.append(f"checks answered differently: {o['answers']} vs {t['answers']}")
    o, t = writers["ours"], writers["theirs"]
    total = WRITERS * STORES_PER_WRITER
    verdict = "met" if o["lost"] == 0 and o["raised"] == 0 else "MISSED"
    rows.append((f"{WRITERS} writers × {STORES_PER_WRITER} stores: stores that raised",
                 str(o["raised"]), str(t["raised"]), ratio(o["raised"], t["raised"]),
                 f"ours 0 ({verdict})"))
    rows.append(("… returned but not kept (lost)", str(o["lost"]),
                 str(t["lost"]), ratio(o["lost"], t["lost"]), f"ours 0 ({verdict})"))
    if verdict != "met":
        missed.append("concurrency")
    rows.append((f"… models kept (of {total})", str(o["kept"]), str(t["kept"]),
                 ratio(o["kept"], t["kept"]), ""))
    rows.append(("… wall time", fmt(o["wall"]), fmt(t["wall"]),
                 ratio(o["wall"], t["wall"]), ""))
    if e2e is not None:
        o, t = e2e["ours"], e2e["theirs"]
        rows.append(("end to end, features → first validated model: wall", fmt(o["wall"]),
                     fmt(t["wall"]), ratio(o["wall"], t["wall"]),
                     goal("end to end", o["wall"] / t["wall"], 0.5)))
        ours_rest = o["wall"] - o["steps"].get("CompileMechanisms", 0.0)
        theirs_rest = t["wall"] - t["steps"]["nrnivmodl mechanisms"]
        rows.append(("… of which compiling the mechanisms (nrnivmodl, both)",
                     fmt(o["steps"].get("CompileMechanisms", 0.0)),
                     fmt(t["steps"]["nrnivmodl mechanisms"]),
                     ratio(o["steps"].get("CompileMechanisms", 0.0),
                           t["steps"]["nrnivmodl mechanisms"]), ""))
        rows.append(("… the rest (start-up, optimise, store, validate; ours: export too)",
                     fmt(ours_rest), fmt(theirs_rest), ratio(ours_rest, theirs_rest), ""))
        rows.append(("… best model: score (sum) / highest objective / validated",
                     f"{o['score']:.1f} / {o['max_score']:.2f} / {o['validated']}",
                     f"{t['score']:.1f} / {t['max_score']:.2f} / {t['validated']}",
                     ratio(o["score"], t["score"]), ""))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"bluepyemodel {REFERENCE_VERSION} ({python}); {os.cpu_count()} cores, load average "
          f"{load:.1f} at the end. Times: wall (CPU of the measuring process); per call for the "
          f"access point, in total otherwise.\n")
    print("| measure | ours | reference | ours / reference | goal |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    counts = "; ".join(
        f"{call} at {a['count']:,}: {a['ours'][call]['calls']} / {a['theirs'][call]['calls']}"
        for a in access for call in ("has_best_model", "get_emodels", "store_emodel"))
    print(f"\ntimed calls of the access point (ours / reference): {counts}")
    print(f"answers of the checks, ours: {checks['ours']['answers']}; reference: "
          f"{checks['theirs']['answers']}")
    for side, w in writers.items():
        if w["errors"] or w["unreadable"]:
            print(f"\n{side}: errors raised by the stores: {w['errors'] or 'none'}"
                  + (f"; at the end, {w['unreadable']}" if w["unreadable"] else ""))
    if e2e is not None:
        for side, name in (("ours", "ours, by luigi task"), ("theirs", "reference, by step")):
            steps = e2e[side]["steps"]
            rest = e2e[side]["wall"] - sum(steps.values())
            print(f"\nend to end, {name}: "
                  + ", ".join(f"{k} {fmt(v)}" for k, v in steps.items())
                  + f"; the rest (start-up, imports, scheduling) {fmt(rest)}")
        print(f"features file sha256 {e2e['features_sha256']}… (the same for both)")
    for name in missed:
        print(f"MISSED: {name}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
