"""Hardening under faults, with real processes: a SIGKILL storm of other writers of final.json
during a ``luigi`` run, luigid SIGKILLed and restarted under two workers, luigid down longer
than luigi's RPC retries, and hostile names that must never reach outside the run root.

Writers of the storm are ``tests/_writer.py store`` processes (as in test_concurrency.py):
they store models of another e-model ("cADtest", a copy of the hh recipe) into the same
final.json as the pipeline.

Luigi settings for a luigid that may restart (see test_luigid_killed_and_restarted_...):
``[core] rpc_retry_attempts`` x ``rpc_retry_wait`` is how long a worker waits for luigid
before failing. luigi's default (3 x 30 s) bears a minute of outage but makes every call
made during an outage sleep 30 s, even when luigid is back within a second;
``rpc_retry_attempts = 60`` and ``rpc_retry_wait = 1`` bear the same minute and resume within
a second. A luigid killed with SIGKILL forgets the task graph (it saves its state only when
it stops cleanly): the workers finish the tasks they were running, then end with "not run"
(exit 25) and the same command, run again, does the rest without redoing finished tasks.
"""

from __future__ import annotations

import configparser
import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from conftest import EMODEL as OTHER_EMODEL
from science_project import EMODEL, make_hh_project
from test_concurrency import Checker, Collector, check_stored, writer
from test_tasks import (  # noqa: F401 - truth_features is a fixture used by name
    LUIGID,
    free_port,
    luigi_command,
    luigi_env,
    make_root,
    ran_tasks,
    truth_features,
)
from luigi_emodel import ConfigurationError, EModelError, LocalAccessPoint, OptimisationState

#: The exit codes of a worker that failed nothing (see luigi.cfg [retcode]).
NOTHING_FAILED = {0, 10, 25}


def add_other_recipe(root: Path, name: str = OTHER_EMODEL) -> None:
    """Add a copy of the hh recipe under ``name`` to the run root's recipes.json."""
    path = root / "recipes.json"
    recipes = json.loads(path.read_text())
    recipes[name] = recipes[EMODEL]
    path.write_text(json.dumps(recipes, indent=2))


def set_core_options(root: Path, **options: object) -> None:
    """Set options of the ``[core]`` section of the run root's luigi.cfg (replacing any the
    repository's luigi.cfg already sets)."""
    path = root / "luigi.cfg"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    for name, value in options.items():
        parser["core"][name] = str(value)
    with open(path, "w") as handle:
        parser.write(handle)


def progress_of(root: Path, seed: int) -> dict:
    """The progress sidecar of ``seed``'s checkpoint, {} while there is none (read without an
    access point: the sidecar is replaced atomically, so a read sees one version)."""
    path = root / "checkpoints" / EMODEL / "None" / f"emodel={EMODEL}__seed={seed}.progress.json"
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}


class ProgressWatcher(threading.Thread):
    """Samples the generation of every seed's sidecar while a run goes on."""

    def __init__(self, root: Path, seeds: list[int]) -> None:
        super().__init__(daemon=True)
        self.root, self.seeds = root, seeds
        self.samples: dict[int, list[int]] = {seed: [] for seed in seeds}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for seed in self.seeds:
                generation = progress_of(self.root, seed).get("generation")
                if generation is not None:
                    self.samples[seed].append(int(generation))
            time.sleep(0.02)

    def restarted(self) -> dict[int, list[int]]:
        """Seeds whose generation ever went down (an optimisation that started again)."""
        return {seed: values for seed, values in self.samples.items()
                if any(b < a for a, b in zip(values, values[1:]))}


def logged_generations(*outputs: str) -> Counter:
    """(seed, generation) -> how many times luigi's logs reported it, over all outputs."""
    found = Counter()
    for output in outputs:
        for seed, generation in re.findall(r"seed (\d+): generation (\d+)/", output):
            found[int(seed), int(generation)] += 1
    return found


def check_checkpoints(root: Path, seeds: list[int], max_ngen: int) -> None:
    """Each seed ran once to max_ngen: completed, and one logbook record per generation."""
    ap = LocalAccessPoint(EMODEL, emodel_dir=root)
    for seed in seeds:
        assert ap.optimisation_state(seed) is OptimisationState.COMPLETED
        assert ap.read_optimisation_progress(seed)["generation"] == max_ngen
        with open(ap.checkpoint_path(seed), "rb") as handle:
            checkpoint = pickle.load(handle)  # noqa: S301 - written by this test's run
        assert [record["gen"] for record in checkpoint["logbook"]] == list(
            range(1, max_ngen + 1))


# -- 1. a SIGKILL storm of other writers while luigi runs --------------------------------------


def test_sigkill_storm_of_other_writers_during_a_luigi_run(tmp_path: Path,
                                                           truth_features: dict) -> None:
    """Rounds of 8 writers of another e-model, each SIGKILLed at a random instant: one while
    a local-scheduler run starts, then one after the other (the next round starts before the
    previous one is killed) from its last optimisation to its end, so that writers store
    while the pipeline stores and validates its own models."""
    seeds = [1, 2, 3]
    root = make_root(tmp_path / "run", truth_features, n_model=3, optimisation_batch_size=3,
                     max_n_batch=1, max_ngen=2)
    add_other_recipe(root)
    final = root / "final.json"
    rng = random.Random(20240611)
    confirmed: set[int] = set()
    checker = Checker(final)
    everyone: list[subprocess.Popen] = []
    logs: list[IO[bytes]] = []
    log = open(tmp_path / "luigi.log", "w+")  # closed below; a file, so no pipe fills up
    luigi = subprocess.Popen(luigi_command(root, "EModelCreation", "--local-scheduler",
                                           "--no-lock"),
                             cwd=root.parent, env=luigi_env(root), stdout=log,
                             stderr=subprocess.STDOUT, text=True)

    def start_round(number: int) -> list[tuple[subprocess.Popen, Collector]]:
        procs = []
        for index in range(8):
            err = open(tmp_path / f"writer-{number}-{index}.err", "wb")
            logs.append(err)
            proc = writer(str(root), (number * 10 + index) * 10_000, 10_000, "--report",
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=err)
            everyone.append(proc)
            collector = Collector(proc, confirmed)
            collector.start()
            procs.append((proc, collector))
        return procs

    rounds = killed = 0
    try:
        checker.start()
        # Round 1 while the pipeline starts and optimises; the next rounds, without a pause,
        # from the last optimisation to the end of the run (the stores, the validation that
        # updates them, the exports), and at least 3 rounds in all.
        current = start_round(0)
        give_up = time.monotonic() + 600
        while True:
            assert time.monotonic() < give_up, "the luigi run did not end"
            # Wait until this round stores (its writers have imported and take the lock in
            # turn), then start the next one and kill this one writer by writer.
            before = len(confirmed)
            deadline = time.monotonic() + 60
            while len(confirmed) < before + 8 and time.monotonic() < deadline:
                time.sleep(0.01)
            rounds += 1
            last = rounds >= 3 and luigi.poll() is not None
            following = None if last or rounds == 1 else start_round(rounds)
            for proc, _ in rng.sample(current, len(current)):
                time.sleep(rng.uniform(0.0, 0.15))
                proc.send_signal(signal.SIGKILL)
                killed += 1
                json.loads(final.read_bytes())  # parses right after every kill
            for proc, collector in current:
                proc.wait(timeout=30)
                collector.join(timeout=30)
                proc.stdout.close()
                assert proc.returncode == -signal.SIGKILL
                assert collector.bad_lines == []
            if rounds == 1:
                while (sum(bool(progress_of(root, s).get("completed")) for s in seeds)
                       < len(seeds) - 1 and luigi.poll() is None):
                    assert time.monotonic() < give_up, "the luigi run did not end"
                    time.sleep(0.02)
                following = start_round(rounds)
            if following is None:
                break
            current = following
        luigi.wait(timeout=300)
    finally:
        checker.stop.set()
        checker.join(timeout=30)
        for proc in [luigi, *everyone]:  # left running by a failed assertion
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        for err in logs:
            err.close()
        log.seek(0)
        output = log.read()
        log.close()

    assert luigi.returncode == 0, output[-3000:]
    assert ran_tasks(output).get("Optimise") == len(seeds)
    assert checker.failures == [] and checker.reads > 20
    errors = {p.name: p.read_text() for p in tmp_path.glob("writer-*.err") if p.read_text()}
    assert errors == {}  # no writer failed before it was killed
    assert killed == 8 * rounds and len(confirmed) >= 8 * rounds
    # Every store whose line was printed is there, with its own content.
    content = check_stored(final, confirmed)
    ours = [f"{EMODEL}__{seed}" for seed in seeds]
    assert set(ours) <= set(content)
    assert all(k in ours or k.startswith(f"{OTHER_EMODEL}__it1__") for k in content)
    ap = LocalAccessPoint(EMODEL, emodel_dir=root)
    for seed in seeds:
        model = content[f"{EMODEL}__{seed}"]
        assert model["emodel"] == EMODEL and model["seed"] == seed
        assert model["validated"] is not None and model["features"]
        assert ap.sonata_exists(seed)
    # Writers stored between the pipeline's stores: entries are in the order they were first
    # stored, and the storm's seeds come both before and after the pipeline's first model.
    order = list(content)
    first_ours = min(order.index(k) for k in ours)
    assert any(k.startswith(f"{OTHER_EMODEL}__") for k in order[:first_ours])
    assert any(k.startswith(f"{OTHER_EMODEL}__") for k in order[first_ours:])


# -- 2. luigid SIGKILLed and restarted under two workers ---------------------------------------


class Luigid:
    """A luigid in the foreground (so that this test owns its pid), on a fixed port and state
    file, that can be SIGKILLed and started again on the same port."""

    def __init__(self, folder: Path, command: list[str] | None = None) -> None:
        self.folder = folder
        self.command = command or [LUIGID]
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = open(folder / "luigid.log", "ab")  # closed by stop()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*self.command, "--address", "127.0.0.1", "--port", str(self.port),
             "--state-path", str(self.folder / "state.pickle")],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/task_list",
                                       timeout=2).read()
                return
            except OSError:
                assert self.proc.poll() is None, (self.folder / "luigid.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.log.close()


def start_workers(root: Path, port: int, count: int, name: str) -> list[tuple[subprocess.Popen,
                                                                                IO[str]]]:
    command = luigi_command(root, "EModelCreation", "--scheduler-host", "127.0.0.1",
                            "--scheduler-port", str(port), "--no-lock")
    workers = []
    for index in range(count):
        log = open(root.parent / f"{name}-{index}.log", "w+")  # closed by finish_workers()
        workers.append((subprocess.Popen(command, cwd=root.parent, env=luigi_env(root),
                                         stdout=log, stderr=subprocess.STDOUT, text=True),
                        log))
    return workers


def finish_workers(workers: list[tuple[subprocess.Popen, IO[str]]],
                   timeout: float = 300) -> tuple[list[int], list[str]]:
    codes, outputs = [], []
    try:
        for proc, _ in workers:
            proc.wait(timeout=timeout)
    finally:
        for proc, log in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            log.seek(0)
            outputs.append(log.read())
            log.close()
            codes.append(proc.returncode)
    return codes, outputs


def failed_tasks(output: str) -> list[str]:
    """The "* N failed..." lines of luigi's execution summary (failed, failed scheduling)."""
    summary = output.split("===== Luigi Execution Summary =====")[-2]
    return re.findall(r"^\* \d+ failed.*$", summary, flags=re.MULTILINE)


def test_luigid_killed_and_restarted_while_optimise_runs(tmp_path: Path,
                                                         truth_features: dict) -> None:
    """Two workers, one Optimise each; luigid is SIGKILLed in the middle of both and started
    again on the same port and state file. The optimisations go on through the outage and
    finish once; the graph luigid forgot is done by running the same command again."""
    seeds, max_ngen = [1, 2], 12
    root = make_root(tmp_path / "run", truth_features, n_model=2, optimisation_batch_size=2,
                     max_n_batch=1, max_ngen=max_ngen)
    # The recommended settings (module docstring), with a shorter outage budget for a test.
    set_core_options(root, rpc_retry_attempts=30, rpc_retry_wait=1)
    state = tmp_path / "luigid"
    state.mkdir()
    luigid = Luigid(state)
    watcher = ProgressWatcher(root, seeds)
    outputs: list[str] = []
    try:
        luigid.start()
        watcher.start()
        workers = start_workers(root, luigid.port, 2, "first")
        deadline = time.monotonic() + 120
        # Both optimisations are under way (and far from their end).
        while not all(progress_of(root, s).get("generation", 0) >= 2 for s in seeds):
            assert all(p.poll() is None for p, _ in workers) and time.monotonic() < deadline
            time.sleep(0.02)
        luigid.kill()
        killed_at = {s: progress_of(root, s)["generation"] for s in seeds}
        time.sleep(1.0)
        luigid.start()
        codes, outputs = finish_workers(workers)
        assert set(codes) <= NOTHING_FAILED, "\n".join(o[-2000:] for o in outputs)
        assert [failed_tasks(o) for o in outputs] == [[], []]
        # The workers did see the outage, and both Optimise tasks went through it.
        assert any("Failed connecting to remote scheduler" in o for o in outputs)
        assert all(g < max_ngen for g in killed_at.values()), killed_at
        first = [ran_tasks(o).get("Optimise", 0) for o in outputs]
        assert sum(first) == len(seeds) and all(first), first
        check_checkpoints(root, seeds, max_ngen)

        # luigid forgot the rest of the graph: the same command finishes the run, and no
        # optimisation runs again (their targets are complete).
        again = start_workers(root, luigid.port, 2, "again")
        codes, more = finish_workers(again)
        outputs += more
        assert set(codes) <= NOTHING_FAILED, "\n".join(o[-2000:] for o in more)
        assert [failed_tasks(o) for o in more] == [[], []]
        assert sum(ran_tasks(o).get("Optimise", 0) for o in more) == 0
    finally:
        watcher.stop.set()
        watcher.join(timeout=30)
        luigid.stop()

    # No optimisation started over: no sidecar went back, and every generation was reported
    # once over all the workers' logs.
    assert watcher.restarted() == {}
    assert all(len(values) > 5 for values in watcher.samples.values())
    generations = logged_generations(*outputs)
    assert set(generations.values()) == {1}, generations
    assert {s for s, _ in generations} == set(seeds)
    assert all(max(g for s2, g in generations if s2 == s) == max_ngen for s in seeds)
    check_checkpoints(root, seeds, max_ngen)
    ap = LocalAccessPoint(EMODEL, emodel_dir=root)
    final = json.loads(ap.final_path.read_text())
    assert sorted(final) == [f"{EMODEL}__{s}" for s in seeds]
    assert all(final[f"{EMODEL}__{s}"]["validated"] is not None for s in seeds)
    assert ap.is_validated() and all(ap.sonata_exists(s) for s in seeds)


def test_state_saving_luigid_killed_and_restarted_run_completes(tmp_path: Path,
                                                                  truth_features: dict) -> None:
    """The same outage with ``luigi-emodel luigid`` (luigid saving its state every second):
    the restarted scheduler resumes the graph, and the workers finish the whole run — store,
    validation, export — without a second command; no optimisation runs twice."""
    seeds, max_ngen = [1, 2], 12
    root = make_root(tmp_path / "run", truth_features, n_model=2, optimisation_batch_size=2,
                     max_n_batch=1, max_ngen=max_ngen)
    set_core_options(root, rpc_retry_attempts=30, rpc_retry_wait=1)
    state = tmp_path / "luigid"
    state.mkdir()
    luigid = Luigid(state, [str(Path(sys.executable).with_name("luigi-emodel")), "luigid",
                            "--save-every", "1"])
    outputs: list[str] = []
    try:
        luigid.start()
        workers = start_workers(root, luigid.port, 2, "first")
        deadline = time.monotonic() + 120
        while not all(progress_of(root, s).get("generation", 0) >= 2 for s in seeds):
            assert all(p.poll() is None for p, _ in workers) and time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(1.5)  # at least one save of the state with both optimisations running
        luigid.kill()
        assert all(progress_of(root, s)["generation"] < max_ngen for s in seeds)
        time.sleep(1.0)
        luigid.start()
        codes, outputs = finish_workers(workers)
    finally:
        luigid.stop()
    assert set(codes) <= NOTHING_FAILED, "\n".join(o[-2000:] for o in outputs)
    assert [failed_tasks(o) for o in outputs] == [[], []]
    # The rest of the graph ran after the restart, in these same workers (with plain luigid
    # it is forgotten: see the test above).
    for family in ("EModelCreation", "StoreBestModels", "Validation"):
        assert sum(ran_tasks(o).get(family, 0) for o in outputs) == 1, family
    assert sum(ran_tasks(o).get("ExportSonata", 0) for o in outputs) == len(seeds)
    assert any("Failed connecting to remote scheduler" in o for o in outputs)
    assert sum(ran_tasks(o).get("Optimise", 0) for o in outputs) == len(seeds)
    check_checkpoints(root, seeds, max_ngen)
    ap = LocalAccessPoint(EMODEL, emodel_dir=root)
    assert ap.is_validated() and all(ap.sonata_exists(s) for s in seeds)


# -- 2b. luigid down for longer than luigi's RPC retries ---------------------------------------


def test_optimise_survives_luigid_down_longer_than_the_rpc_retries(
        tmp_path: Path, truth_features: dict) -> None:
    """Progress reports to luigid are a courtesy: when luigid is down for longer than the
    RPC retries (here 2 x 1 s) the optimisation goes on; once luigid is back the worker
    reports the task done."""
    seed, max_ngen = 1, 10
    root = make_root(tmp_path / "run", truth_features, n_model=1, optimisation_batch_size=1,
                     max_n_batch=1, max_ngen=max_ngen)
    set_core_options(root, rpc_retry_attempts=2, rpc_retry_wait=1)
    state = tmp_path / "luigid"
    state.mkdir()
    luigid = Luigid(state)
    try:
        luigid.start()
        workers = start_workers(root, luigid.port, 1, "worker")
        proc = workers[0][0]
        deadline = time.monotonic() + 120
        while progress_of(root, seed).get("generation", 0) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        luigid.kill()
        at_kill = progress_of(root, seed)["generation"]
        # Down until the optimisation went on for three generations: its progress reports
        # to luigid (each given up after 2 x 1 s) failed meanwhile.
        while progress_of(root, seed).get("generation", 0) < at_kill + 3:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        assert progress_of(root, seed)["generation"] < max_ngen
        luigid.start()
        (code,), (output,) = finish_workers(workers)
    finally:
        luigid.stop()
    assert code in NOTHING_FAILED, output[-3000:]
    assert "progress not sent to the scheduler" in output
    assert ran_tasks(output).get("Optimise") == 1
    assert failed_tasks(output) == []
    check_checkpoints(root, [seed], max_ngen)


# -- 4. hostile names never reach outside the run root -----------------------------------------


def files_outside(sandbox: Path, root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``sandbox`` but not under ``root``."""
    return {str(p.relative_to(sandbox)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(sandbox.rglob("*")) if root not in (p, *p.parents)}


def make_sandbox(tmp_path: Path, **settings: object) -> tuple[Path, Path]:
    """sandbox/run (the hh project) beside sandbox/outside/keep.txt; returns both folders."""
    sandbox = tmp_path / "sandbox"
    root = make_hh_project(sandbox / "run", **settings)
    (sandbox / "outside").mkdir()
    (sandbox / "outside" / "keep.txt").write_text("keep")
    return sandbox, root


def hostile_names(sandbox: Path) -> list[str]:
    """Names that would leave a folder if they were used as path components unchecked."""
    return ["..", ".", "../..", "../outside", "a/../../outside", str(sandbox / "outside"),
            "outside\x00.txt", "x" * 1000, "../" * 300 + "outside", ""]


def use_path(root: Path, make: Callable[[], Path]) -> bool:
    """Call ``make``; a path it returns must be inside ``root`` and is then written (a file,
    its folders created). Returns False when ``make`` refused with the package's own error."""
    try:
        path = make()
    except EModelError:
        return False
    assert Path(os.path.realpath(path)).is_relative_to(root), path
    assert os.path.normpath(path) == str(path), path  # no '..' left to resolve later
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_dir():
        path.write_text("written")
    return True


def test_hostile_names_stay_in_the_run_root_through_the_api(tmp_path: Path) -> None:
    """Emodel names, iteration tags, other metadata values, seeds, figure kinds and
    extensions with '..', absolute paths, NUL or 1,000 characters: each is refused with the
    package's error or gives a path inside the run root, which is then written."""
    sandbox, root = make_sandbox(tmp_path)
    root = Path(os.path.realpath(root))
    before = files_outside(sandbox, root)
    names = hostile_names(sandbox)
    for name in names:
        with pytest.raises(ConfigurationError):
            LocalAccessPoint(name, emodel_dir=root)
        if name:  # "" is no iteration tag (luigi's spelling of None)
            with pytest.raises(ConfigurationError):
                LocalAccessPoint(EMODEL, emodel_dir=root, iteration_tag=name)
    access_points = [LocalAccessPoint(EMODEL, emodel_dir=root, iteration_tag="it1")]
    for field in ("etype", "ttype", "mtype", "species", "brain_region"):
        for name in names:
            try:
                access_points.append(LocalAccessPoint(EMODEL, emodel_dir=root,
                                                      **{field: name}))
            except ConfigurationError:
                assert "\x00" in name or len(name) > 200, (field, name)
    seeds: list[object] = [*names, "1/../../outside", 10 ** 1000, float("inf"), float("nan"),
                           None, True, 1.5, -1, 0, 7]
    refused = written = 0
    for ap in access_points:
        calls: list[Callable[[], Path]] = []
        for seed in seeds:
            calls += [lambda s=seed: ap.checkpoint_path(s),
                      lambda s=seed: ap.optimisation_progress_path(s),
                      lambda s=seed: ap.export_dir("sonata", s) / "model.hoc",
                      lambda s=seed: ap.export_dir("hoc", s) / "model.hoc",
                      lambda s=seed: ap.figure_path("optimisation", s)]
        for name in names:
            calls += [lambda n=name: ap.figure_path(n, 1),
                      lambda n=name: ap.figure_path("optimisation", 1, extension=n),
                      lambda n=name: ap.figures_dir(n) / "figure.pdf",
                      lambda n=name: ap.state_dir(n) / "state",
                      lambda n=name: ap.export_dir(n, 1)]
        for call in calls:
            if use_path(root, call):
                written += 1
            else:
                refused += 1
        for seed in seeds:
            try:
                ap.store_emodel({"seed": seed, "parameters": {"gnabar_hh.somaxon": 0.1},
                                 "fitness": {"Step_100.soma.v.Spikecount": 1.0}})
                ap.store_optimisation_progress(seed, {"generation": 1, "completed": False})
            except EModelError:
                refused += 1
                continue
            assert ap.has_best_model(seed)
            assert ap.optimisation_state(seed) is OptimisationState.IN_PROGRESS
    assert refused and written  # both kinds happened, for every access point
    assert files_outside(sandbox, root) == before
    # What was stored went to final.json under keys, not to paths named after the seeds.
    final = json.loads((root / "final.json").read_text())
    assert f"{EMODEL}__it1__-1" in final and f"{EMODEL}__{10 ** 1000}" in final


def test_hostile_names_stay_in_the_run_root_through_luigi(tmp_path: Path) -> None:
    """The same through ``luigi`` command lines: refused before any task runs, or (metadata
    values with '..' and absolute paths, a negative seed) a whole run that writes only under
    the run root."""
    sandbox, root = make_sandbox(tmp_path, max_ngen=1, optimisation_params={"offspring_size": 4},
                                 n_model=1, optimisation_batch_size=1, max_n_batch=1,
                                 validation_threshold=1e9)
    config = (Path(__file__).resolve().parent.parent / "luigi.cfg").read_text()
    (root / "luigi.cfg").write_text(config.replace("\nemodel_dir = .\n",
                                                  f"\nemodel_dir = {root}\n"))
    before = files_outside(sandbox, root)
    outside = str(sandbox / "outside")
    refused = [["--emodel", "../outside"], ["--emodel", outside], ["--emodel", "x" * 1000],
               ["--iteration-tag", ".."], ["--iteration-tag", "../outside"],
               ["--iteration-tag", outside], ["--iteration-tag", "x" * 1000],
               ["--etype", "x" * 1000], ["--seed", "9" * 1000]]
    base = luigi_command(root, "EModelCreation")[:-2]
    procs = []
    try:
        # All at once: each spends most of its time importing.
        for args in refused:
            emodel = [] if args[0] == "--emodel" else ["--emodel", EMODEL]
            procs.append(subprocess.Popen(
                [*base, *emodel, *args, "--local-scheduler", "--no-lock"], cwd=sandbox,
                env=luigi_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True))
        outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    for args, proc, output in zip(refused, procs, outputs):
        assert proc.returncode not in NOTHING_FAILED, (args[0], output[-2000:])
        assert "ConfigurationError" in output and ran_tasks(output) == {}, args[0]
    assert sorted(p.name for p in root.iterdir()) == [
        "config", "luigi.cfg", "morphologies", "recipes.json"]

    accepted = subprocess.run(
        [*base, "--emodel", EMODEL, "--etype", "../../outside", "--mtype", "..",
         "--brain-region", outside, "--seed", "-1", "--local-scheduler", "--no-lock"],
        cwd=sandbox, env=luigi_env(root), capture_output=True, text=True, timeout=300)
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    assert ran_tasks(accepted.stderr).get("Optimise") == 1
    assert files_outside(sandbox, root) == before
    ap = LocalAccessPoint(EMODEL, emodel_dir=root, etype="../../outside", mtype="..",
                          brain_region=outside)
    assert ap.checkpoint_path(-1).is_file() and ap.sonata_exists(-1)
    assert ap.checkpoint_path(-1).parent == root / "checkpoints" / EMODEL / "None"
