"""A "nothing to do" Luigi pass over thousands of targets: how much of it is our checks?

Run from the repository root::

    .venv/bin/python benchmarks/targets.py                     # 100 emodels x 10 seeds
    .venv/bin/python benchmarks/targets.py --emodels 20 --seeds 5 --profile

A fresh run root gets ``--emodels`` recipes (sharing one parameters file and one features
file), a final.json with ``--emodels x --seeds`` validated models (shaped like optimisation
results, about 5 kB each) and as many SONATA export folders with a ``model.hoc``. Every
target of the pass then exists, and each measured pass runs in a fresh process of its own:

* **loop**: ``exists()`` of every BestModelTarget, ValidationTarget and SonataTarget, twice
  (the first pass builds the access points and parses final.json; the second is the steady
  state). Our checks alone, no Luigi.
* **luigi CLI**: ``luigi --module targets TargetsPass --local-scheduler`` (this file,
  imported by the ``luigi`` command). TargetsPass is a WrapperTask requiring, per emodel
  and seed, ``StoreBestModels(seeds=[seed])``, ``Validation(seeds=[seed])`` and
  ``ExportSonata(seed)``; as for ``SeveralEModelCreation``, Luigi asks the wrapper whether
  it is complete, which asks every required task.
* **luigi.build, every task a root**: the same tasks given to ``luigi.build`` (one worker,
  local scheduler): Luigi checks each one and registers it with the scheduler, the most
  Luigi work a nothing-to-do pass over these targets can cause.
* **luigi.build, batches**: the tasks as ``EModelCreation`` builds them: one
  ``StoreBestModels`` and one ``Validation`` per emodel over all its seeds, one
  ``ExportSonata`` per seed (same targets, fewer tasks).

In the Luigi runs this module wraps the three target classes' ``exists()`` and the three
task classes' ``output()`` with timers: "ours" is the time inside them (building the access
points and parsing final.json on first use included), "Luigi" the rest of the time after
the imports (instantiating tasks, completeness bookkeeping, the scheduler, logging, the
summary). It also wraps every ``run()`` of the pipeline, and checks that nothing ran. The
script exits with status 1 if the goal is missed: the whole CLI pass within 5 s, with our
share below Luigi's.
"""

from __future__ import annotations

import time

_T_IMPORT = time.time()  # the luigi CLI imports this module after its own start-up

import argparse  # noqa: E402
import atexit  # noqa: E402
import cProfile  # noqa: E402
import functools  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import _timing  # noqa: E402  (this folder, first on sys.path)

import luigi  # noqa: E402

from luigi_emodel.tasks import (  # noqa: E402
    BestModelTarget,
    ExportSonata,
    Optimise,
    SonataTarget,
    StoreBestModels,
    Validation,
    ValidationTarget,
)

_T_IMPORTED = time.time()

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
#: Where a child process writes its measurements (set by the parent).
OUT_ENV = "LUIGI_EMODEL_BENCH_OUT"
#: The whole CLI pass must take at most this long (seconds).
GOAL_WALL = 5.0

METADATA = {"species": "rat", "brain_region": "SSCX", "iteration_tag": "it1"}
TARGET_CLASSES = (BestModelTarget, ValidationTarget, SonataTarget)
TASK_CLASSES = (StoreBestModels, Validation, ExportSonata)


def emodel_names(count: int) -> list[str]:
    return [f"cADbench{i:03d}" for i in range(count)]


def pass_tasks(n_emodels: int, n_seeds: int, shape: str) -> list[luigi.Task]:
    """The tasks whose outputs are the pass's targets: per seed, or batched per emodel."""
    seeds = list(range(1, n_seeds + 1))
    tasks: list[luigi.Task] = []
    for emodel in emodel_names(n_emodels):
        if shape == "seed":
            for seed in seeds:
                tasks += [StoreBestModels(emodel=emodel, seeds=[seed], **METADATA),
                          Validation(emodel=emodel, seeds=[seed], **METADATA),
                          ExportSonata(emodel=emodel, seed=seed, **METADATA)]
        else:
            tasks += [StoreBestModels(emodel=emodel, seeds=seeds, **METADATA),
                      Validation(emodel=emodel, seeds=seeds, **METADATA)]
            tasks += [ExportSonata(emodel=emodel, seed=seed, **METADATA) for seed in seeds]
    return tasks


class TargetsPass(luigi.WrapperTask):
    """Every StoreBestModels, Validation and ExportSonata task of the benchmark's run root."""

    n_emodels = luigi.IntParameter(default=100)
    n_seeds = luigi.IntParameter(default=10)
    shape = luigi.ChoiceParameter(default="seed", choices=["seed", "batch"])

    def requires(self) -> list[luigi.Task]:
        return pass_tasks(self.n_emodels, self.n_seeds, self.shape)


# -- instrumentation (child processes) ------------------------------------------------------------

class Timers:
    """Time spent in our ``exists()`` and ``output()``, and a count of ``run()`` calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.runs: list[str] = []

    def _timed(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        seconds, calls = self.seconds, self.calls
        seconds[name] = 0.0
        calls[name] = 0
        clock = time.perf_counter

        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return method(*args, **kwargs)
            finally:
                seconds[name] += clock() - start
                calls[name] += 1

        return wrapper

    def _counted(self, cls: type) -> Callable[..., Any]:
        method = cls.run

        @functools.wraps(method)
        def wrapper(task: luigi.Task) -> Any:
            self.runs.append(task.task_id)
            return method(task)

        return wrapper

    def install(self) -> None:
        for cls in TARGET_CLASSES:
            cls.exists = self._timed(f"{cls.__name__}.exists", cls.exists)
        for cls in TASK_CLASSES:
            cls.output = self._timed(f"{cls.__name__}.output", cls.output)
        for cls in (*TASK_CLASSES, Optimise, TargetsPass):
            cls.run = self._counted(cls)

    def ours(self) -> float:
        return sum(self.seconds.values())

    def exists_calls(self) -> int:
        return sum(n for name, n in self.calls.items() if name.endswith(".exists"))

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "calls": self.calls, "runs": self.runs,
                "ours": self.ours(), "exists_calls": self.exists_calls()}


def _dump(path: str, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data))


if __name__ != "__main__" and os.environ.get(OUT_ENV):
    # Imported by the `luigi` command: instrument, and report when the process exits.
    _TIMERS = Timers()
    _TIMERS.install()
    atexit.register(lambda: _dump(os.environ[OUT_ENV], {
        "t_import": _T_IMPORT, "t_imported": _T_IMPORTED, "t_exit": time.time(),
        **_TIMERS.as_dict(),
    }))


def _profiled(enabled: bool, call: Callable[[], Any]) -> tuple[Any, str]:
    """``call()``, and the top of its cProfile (by own time) when ``enabled``."""
    if not enabled:
        return call(), ""
    profile = cProfile.Profile()
    result = profile.runcall(call)
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(25)
    return result, text.getvalue()


def child_loop(args: argparse.Namespace) -> dict[str, Any]:
    """exists() of every target, twice, in this fresh process."""
    start = time.perf_counter()
    targets = []
    for emodel in emodel_names(args.emodels):
        for seed in range(1, args.seeds + 1):
            targets += [cls(seed, emodel=emodel, **METADATA) for cls in TARGET_CLASSES]
    built = time.perf_counter() - start

    def one_pass() -> float:
        start = time.perf_counter()
        missing = [t for t in targets if not t.exists()]
        if missing:
            raise SystemExit(f"{len(missing)} targets do not exist, e.g. {missing[0].metadata}")
        return time.perf_counter() - start

    cold, profile_cold = _profiled(args.profile, one_pass)
    warm, profile_warm = _profiled(args.profile, one_pass)
    return {"targets": len(targets), "construct": built, "cold": cold, "warm": warm,
            "profile": f"first pass:\n{profile_cold}\nsecond pass:\n{profile_warm}"}


def child_build(args: argparse.Namespace) -> dict[str, Any]:
    """luigi.build of every task as a root, in this fresh process."""
    timers = Timers()
    timers.install()
    start = time.time()

    def build() -> Any:
        tasks = pass_tasks(args.emodels, args.seeds, args.shape)
        return len(tasks), luigi.build(tasks, workers=1, local_scheduler=True,
                                       detailed_summary=True)

    (n_tasks, result), profile = _profiled(args.profile, build)
    end = time.time()
    return {"t_import": _T_IMPORT, "t_imported": _T_IMPORTED, "t_start": start, "t_exit": end,
            "tasks": n_tasks, "summary": result.summary_text, "profile": profile,
            **timers.as_dict()}


# -- the run root -------------------------------------------------------------------------------

def stored_entry(emodel: str, seed: int, template: dict[str, Any]) -> dict[str, Any]:
    """A validated model as the optimisation and validation store it (about 5 kB)."""
    objectives = [f"{p}.soma.v.{f}" for p in ("IDrest_130", "IDrest_200", "IDrest_280",
                                              "IV_-100", "APWaveform_360")
                  for f in ("mean_frequency", "AP_amplitude", "AHP_depth", "inv_first_ISI",
                            "time_to_first_spike", "voltage_base", "Spikecount",
                            "steady_state_voltage_stimend")]
    scale = 1.0 + seed * 1e-4
    fitness = {name: 0.987654321 * scale * (i % 7) for i, name in enumerate(objectives)}
    return {
        **template, "emodel": emodel, "seed": seed, "score": sum(fitness.values()),
        "parameters": {f"gbar_{i}.somatic": 0.0123456789 * scale * (i + 1) for i in range(15)},
        "fitness": fitness,
        "features": {name: -65.4321098765 * scale + i for i, name in enumerate(objectives)},
        "validation_fitness": {f"IDhyperpol_150.soma.v.f{i}": 0.5 * scale for i in range(6)},
        "validated": seed % 4 != 0,  # a verdict either way: both count as checked
    }


def build_run_root(root: Path, n_emodels: int, n_seeds: int) -> None:
    """Recipes, final.json and SONATA exports: every target of the pass exists."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_project

    from luigi_emodel import LocalAccessPoint
    from luigi_emodel.schemas.stored_model import final_key

    names = emodel_names(n_emodels)
    make_project(root, emodel=names[0])
    recipes_path = root / "recipes.json"
    recipes = json.loads(recipes_path.read_text())
    # Every emodel shares the first one's parameters, features and settings files.
    recipes.update({name: recipes[names[0]] for name in names[1:]})
    recipes_path.write_text(json.dumps(recipes, indent=2))
    # As in a real pass, the recipes are not brand new: access points share a recipes.json
    # parsed by another one only once its timestamp is a few seconds old.
    an_hour_ago = time.time() - 3600
    os.utime(recipes_path, (an_hour_ago, an_hour_ago))
    shutil.copy(REPO / "luigi.cfg", root / "luigi.cfg")  # emodel_dir = . (the run root)

    first = LocalAccessPoint(names[0], emodel_dir=root, **METADATA)
    first.store_emodel(stored_entry(names[0], 1, {}))  # the entry exactly as stored
    template = first.get_final()[first.get_model_name_for_final(1)]
    content = {}
    for name in names:
        access_point = LocalAccessPoint(name, emodel_dir=root, **METADATA)
        for seed in range(1, n_seeds + 1):
            content[final_key(name, METADATA["iteration_tag"], seed)] = stored_entry(
                name, seed, template)
            folder = access_point.export_dir("sonata", seed)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "model.hoc").touch()
    first.save_final(content)


# -- parent -------------------------------------------------------------------------------------

def run_child(root: Path, command: list[str], label: str) -> tuple[dict[str, Any], float, str]:
    """Run ``command`` in ``root``; returns its report, its wall time and its log.

    The report gets ``cpu``: the CPU time (user + system) of the process, which, unlike the
    wall time, does not count waiting for a core on a busy machine.
    """
    out = root / f"bench-{label}.json"
    log = root / f"bench-{label}.log"
    env = {**os.environ, OUT_ENV: str(out),
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    with open(log, "wb") as stream:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        launched = time.time()
        process = subprocess.run(command, cwd=root, env=env, stdout=stream, stderr=stream)
        wall = time.time() - launched
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = log.read_text(errors="replace")
    if process.returncode != 0 or not out.is_file():
        raise SystemExit(f"{label}: exit status {process.returncode}; log {log}:\n{text[-3000:]}")
    report = json.loads(out.read_text())
    report["t_launch"] = launched
    report["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return report, wall, text


def fmt(seconds: float) -> str:
    return _timing.fmt(seconds, ms_decimals=0)


def check_nothing_ran(label: str, report: dict[str, Any], summary: str) -> None:
    if report["runs"] or "Did not run any tasks" not in summary:
        raise SystemExit(f"{label}: Luigi ran tasks in a nothing-to-do pass: "
                         f"{report['runs'][:5]}\n{summary}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emodels", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--root", type=Path, help="run root to build and keep (default: a "
                                                  "temporary folder, removed at the end)")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of the steady-state loop and of luigi.build")
    parser.add_argument("--child", choices=["loop", "build"], help=argparse.SUPPRESS)
    parser.add_argument("--shape", choices=["seed", "batch"], default="seed",
                        help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        report = child_loop(args) if args.child == "loop" else child_build(args)
        _dump(os.environ[OUT_ENV], report)
        return 0

    temporary = None
    if args.root is None:
        temporary = tempfile.TemporaryDirectory(prefix="bench-targets-")
        root = Path(temporary.name)
    else:
        root = args.root.resolve()
        root.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, root)
    finally:
        if temporary is not None:
            temporary.cleanup()


def run(args: argparse.Namespace, root: Path) -> int:
    n = args.emodels * args.seeds
    start = time.perf_counter()
    build_run_root(root, args.emodels, args.seeds)
    final_mb = (root / "final.json").stat().st_size / 1e6
    print(f"run root {root}: {args.emodels} emodels x {args.seeds} seeds, final.json "
          f"{n:,} models ({final_mb:.1f} MB), {n:,} SONATA exports; built in "
          f"{time.perf_counter() - start:.1f} s")
    python = sys.executable
    sizes = ["--emodels", str(args.emodels), "--seeds", str(args.seeds)]

    loop, loop_wall, _ = run_child(root, [python, __file__, "--child", "loop", *sizes], "loop")

    luigi_bin = str(Path(python).with_name("luigi"))
    cli, cli_wall, cli_log = run_child(
        root, [luigi_bin, "--module", "targets", "TargetsPass", "--n-emodels",
               str(args.emodels), "--n-seeds", str(args.seeds), "--local-scheduler"], "cli")
    summary = cli_log[cli_log.find("===== Luigi Execution Summary ====="):]
    check_nothing_ran("luigi CLI", cli, summary)

    builds = {}
    for shape in ("seed", "batch"):
        report, wall, _ = run_child(
            root, [python, __file__, "--child", "build", "--shape", shape, *sizes],
            f"build-{shape}")
        check_nothing_ran(f"luigi.build ({shape})", report, report["summary"])
        builds[shape] = (report, wall)

    rows = []
    # (pass, tasks, exists calls, process wall, process CPU, start-up + imports, Luigi, ours)
    calls = loop["targets"]
    rows.append(("loop, first pass (fresh process)", "-", calls, None, None, None, None,
                 loop["cold"]))
    rows.append(("loop, second pass", "-", calls, None, None, None, None, loop["warm"]))
    cli_inside = cli["t_exit"] - cli["t_imported"]
    rows.append(("luigi CLI, WrapperTask root", 3 * n + 1, cli["exists_calls"], cli_wall,
                 cli["cpu"], cli["t_imported"] - cli["t_launch"], cli_inside - cli["ours"],
                 cli["ours"]))
    for shape, label in (("seed", "luigi.build, every task a root"),
                         ("batch", "luigi.build, batches per emodel")):
        report, wall = builds[shape]
        inside = report["t_exit"] - report["t_start"]
        rows.append((label, report["tasks"], report["exists_calls"], wall, report["cpu"],
                     report["t_start"] - report["t_launch"], inside - report["ours"],
                     report["ours"]))

    def cell(seconds: float | None) -> str:
        return "-" if seconds is None else fmt(seconds)

    print()
    print("| pass | tasks | exists() calls | process wall | process CPU | start-up + imports "
          "| Luigi | ours | ours / (Luigi + ours) | ours per exists() |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, tasks, count, wall, cpu, startup, luigi_s, ours in rows:
        cells = [label, f"{tasks:,}" if isinstance(tasks, int) else tasks, f"{count:,}",
                 cell(wall), cell(cpu), cell(startup), cell(luigi_s), fmt(ours),
                 "-" if luigi_s is None else f"{ours / (ours + luigi_s):.3f}",
                 fmt(ours / count)]
        print("| " + " | ".join(cells) + " |")
    print(f"\nRatios: CLI wall / {GOAL_WALL:.0f} s goal = {cli_wall / GOAL_WALL:.3f}; "
          f"ours / Luigi in the CLI pass = {cli['ours'] / (cli_inside - cli['ours']):.3f}; "
          f"loop first / second pass = {loop['cold'] / loop['warm']:.2f}")

    print()
    print("Time inside our methods in the CLI pass:")
    for name, seconds in sorted(cli["seconds"].items(), key=lambda kv: -kv[1]):
        count = cli["calls"][name]
        print(f"  {name:28s} {count:6,} calls {fmt(seconds):>9s} "
              f"({fmt(seconds / count) if count else '-'} each)")
    print("Luigi's summary of the CLI pass:")
    print("  " + "\n  ".join(line for line in summary.splitlines()[1:6] if line.strip()))

    if args.profile:
        # Separate runs: the profiler slows Luigi's many small calls far more than ours.
        loop, _, _ = run_child(root, [python, __file__, "--child", "loop", *sizes,
                                      "--profile"], "loop-profile")
        print("\ncProfile, loop, " + loop["profile"])
        report, _, _ = run_child(root, [python, __file__, "--child", "build", "--shape", "seed",
                                        *sizes, "--profile"], "build-profile")
        print("cProfile, luigi.build, every task a root:\n" + report["profile"])

    met = cli_wall <= GOAL_WALL and cli["ours"] < cli_inside - cli["ours"]
    print(f"\nGoal: the CLI pass within {GOAL_WALL:.0f} s ({fmt(cli_wall)}), our checks less "
          f"than Luigi's own time ({fmt(cli['ours'])} vs {fmt(cli_inside - cli['ours'])}): "
          f"{'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
