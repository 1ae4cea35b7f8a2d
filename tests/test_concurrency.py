"""final.json under many real writer processes, including writers SIGKILLed mid-store.

Writers are ``tests/_writer.py store`` processes: each builds its own LocalAccessPoint on one
run root, as the optimisation tasks of a pipeline do, and stores models through it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from conftest import EMODEL, make_project
from luigi_emodel import LocalAccessPoint
from luigi_emodel.access_point.final_store import FinalStore

WRITER = Path(__file__).with_name("_writer.py")


def key(seed: int) -> str:
    return f"{EMODEL}__it1__{seed}"


def writer(root: str, first: int, count: int, *options: str, cwd: Path,
           stdout: int | IO = subprocess.DEVNULL, stderr: IO | int = subprocess.PIPE,
           ) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WRITER), "store", root, str(first), str(count), *options],
        cwd=cwd, stdout=stdout, stderr=stderr,
    )


def check_stored(final: Path, seeds: set[int]) -> dict:
    """final.json parses and holds every seed in ``seeds`` with its own content."""
    content = json.loads(final.read_bytes())
    for seed in seeds:
        entry = content.get(key(seed))
        assert entry is not None, f"seed {seed} was reported stored but is missing"
        assert (entry["seed"], entry["score"], entry["iteration"]) == (seed, seed, "it1")
    return content


def test_sixteen_processes_from_sixteen_folders_store_800_models(tmp_path: Path) -> None:
    root = tmp_path / "run"
    make_project(root)
    # Writers start one after the other (imports take a while); they store from this time on,
    # all together, so that they contend for the lock from the first store.
    start_at = time.time() + 3.0
    procs = []
    try:
        for index in range(16):
            # Different working folders at different depths; half name the run root relative
            # to their own folder, half absolutely: all must land in the same final.json.
            cwd = tmp_path.joinpath("cwd", *[f"d{index}"] * (1 + index % 4))
            cwd.mkdir(parents=True)
            run_root = os.path.relpath(root, cwd) if index % 2 == 0 else str(root)
            procs.append(writer(run_root, index * 50, 50, "--start-at", str(start_at), cwd=cwd))
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)

    content = check_stored(root / "final.json", set(range(800)))
    assert len(content) == 800
    assert sorted(p.name for p in root.iterdir() if p.name.startswith((".final", "final"))) == [
        "final.json", "final.json.lock",
    ]  # no temporary file left by writers that finished
    ap = LocalAccessPoint(EMODEL, emodel_dir=root, species="rat", brain_region="SSCX",
                          iteration_tag="it1")
    assert sorted(model.seed for model in ap.get_emodels()) == list(range(800))
    assert all(ap.has_best_model(seed) for seed in range(800))


class Collector(threading.Thread):
    """Reads ``stored <seed>`` lines of one writer into a shared set."""

    def __init__(self, proc: subprocess.Popen, confirmed: set[int]) -> None:
        super().__init__(daemon=True)
        self.proc, self.confirmed = proc, confirmed
        self.bad_lines: list[bytes] = []

    def run(self) -> None:
        for line in self.proc.stdout:
            # A SIGKILLed writer never leaves half a line: each is one short write(2).
            if line.startswith(b"stored ") and line.endswith(b"\n"):
                self.confirmed.add(int(line.split()[1]))
            else:
                self.bad_lines.append(line)


class Checker(threading.Thread):
    """Parses final.json over and over while writers run and die, as any reader would."""

    def __init__(self, final: Path) -> None:
        super().__init__(daemon=True)
        self.final = final
        self.stop = threading.Event()
        self.reads = 0
        self.failures: list[str] = []

    def run(self) -> None:
        store = FinalStore(self.final, use_cache=True)
        while not self.stop.is_set():
            try:
                data = json.loads(self.final.read_bytes())
                assert isinstance(data, dict)
                store.entries()
                self.reads += 1
            except FileNotFoundError:
                pass  # before the first store
            except Exception as error:  # every failure is reported, not only assertions
                self.failures.append(repr(error))
            time.sleep(0.005)


def test_writers_killed_at_random_moments_lose_no_reported_store(tmp_path: Path) -> None:
    """SIGKILL storm: 3 rounds of 8 writers, killed one by one at random moments.

    A writer killed between creating its temporary file and renaming it leaves that file
    (``.final.json.<pid>.<random>.tmp``) behind; nothing reads or reuses such names, so they
    block nothing and can be deleted at any time.
    """
    root = tmp_path / "run"
    make_project(root)
    final = root / "final.json"
    rng = random.Random(20240517)
    confirmed: set[int] = set()
    checker = Checker(final)
    checker.start()
    killed = 0
    everyone: list[subprocess.Popen] = []
    try:
        for round_ in range(3):
            procs, logs, collectors = [], [], []
            for index in range(8):
                log = open(tmp_path / f"writer-{round_}-{index}.err", "wb")  # closed below
                first = (round_ * 10 + index) * 10_000
                proc = writer(str(root), first, 10_000, "--report", cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=log)
                procs.append(proc)
                everyone.append(proc)
                logs.append(log)
                collectors.append(Collector(proc, confirmed))
                collectors[-1].start()
            # Let them import and start storing, then kill them one by one.
            before = len(confirmed)
            deadline = time.monotonic() + 30
            while len(confirmed) < before + 16 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.5))
            for proc in rng.sample(procs, len(procs)):
                time.sleep(rng.uniform(0.0, 0.25))
                proc.send_signal(signal.SIGKILL)
                killed += 1
                json.loads(final.read_bytes())  # parses right after every kill
            for proc, collector, log in zip(procs, collectors, logs):
                proc.wait(timeout=30)
                collector.join(timeout=30)
                proc.stdout.close()
                log.close()
                assert proc.returncode == -signal.SIGKILL
                assert collector.bad_lines == []
    finally:
        checker.stop.set()
        checker.join(timeout=30)
        for proc in everyone:  # writers left running by a failed assertion
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    assert checker.failures == []
    assert checker.reads > 50
    # No writer failed before it was killed (a killed process cannot print a traceback).
    errors = {p.name: p.read_text() for p in tmp_path.glob("writer-*.err") if p.read_text()}
    assert errors == {}
    assert killed == 24 and len(confirmed) >= 48  # the storm did hit writers while storing
    content = check_stored(final, confirmed)
    assert set(content) >= {key(seed) for seed in confirmed}

    # Whatever the storm left behind (a lock file, maybe temporary files) blocks no one.
    after = writer(str(root), 999_000, 5, cwd=tmp_path)
    _, err = after.communicate(timeout=60)
    assert after.returncode == 0, err.decode()
    check_stored(final, confirmed | set(range(999_000, 999_005)))
