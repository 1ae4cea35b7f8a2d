"""The Luigi workflow through the real ``luigi`` command: local scheduler, a real luigid with
two workers, SIGTERM during an optimisation, and exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from science_project import EMODEL, TRUE_PARAMETERS, ground_truth_features, make_hh_project
from luigi_emodel import LocalAccessPoint, OptimisationState
from luigi_emodel.science.evaluator import build_evaluator

REPO = Path(__file__).resolve().parent.parent
LUIGI = str(Path(sys.executable).with_name("luigi"))
LUIGID = str(Path(sys.executable).with_name("luigid"))
SETTINGS = {
    "max_ngen": 2, "optimisation_params": {"offspring_size": 6}, "n_model": 2,
    "optimisation_batch_size": 2, "max_n_batch": 2, "validation_threshold": 1000.0,
}


@pytest.fixture(scope="module")
def truth_features(tmp_path_factory) -> dict:
    root = make_hh_project(tmp_path_factory.mktemp("truth"))
    result = build_evaluator(LocalAccessPoint(EMODEL, emodel_dir=root)).evaluate(TRUE_PARAMETERS)
    return ground_truth_features(result.features)


def make_root(root: Path, truth_features: dict, **settings) -> Path:
    make_hh_project(root, features=truth_features, **{**SETTINGS, **settings})
    # The repository's luigi.cfg, pointed at this run root.
    config = (REPO / "luigi.cfg").read_text()
    assert "\nemodel_dir = .\n" in config
    (root / "luigi.cfg").write_text(config.replace("\nemodel_dir = .\n", f"\nemodel_dir = {root}\n"))
    return root


def luigi_command(root: Path, task: str = "EModelCreation", *extra: str) -> list[str]:
    """The luigi command line, ending with ``--emodel <name>``."""
    return [LUIGI, "--module", "luigi_emodel.tasks", task, *extra, "--emodel", EMODEL]


def luigi_env(root: Path) -> dict[str, str]:
    return {**os.environ, "LUIGI_CONFIG_PATH": str(root / "luigi.cfg")}


def run_luigi(root: Path, *extra: str, task: str = "EModelCreation",
              timeout: float = 300) -> subprocess.CompletedProcess:
    # Run from elsewhere: nothing may depend on the working directory.
    # --no-lock: luigi's pid lock would refuse a second run of the same command line (e.g. by
    # another test session on the same host).
    return subprocess.run(luigi_command(root, task, *extra, "--no-lock"), cwd=root.parent,
                          env=luigi_env(root), capture_output=True, text=True, timeout=timeout)


def ran_tasks(output: str) -> dict[str, int]:
    """Task family -> count, from the "ran successfully" part of luigi's execution summary
    (luigi groups tasks of one family on a line: "- 3 Optimise(... seed=1...3)")."""
    counts: dict[str, int] = {}
    inside = False
    for line in output.splitlines():
        if "ran successfully:" in line:
            inside = True
            continue
        if inside:
            stripped = line.strip()
            if line.startswith("    - ") and stripped[2:].split(" ", 1)[0].isdigit():
                count, task = stripped[2:].split(" ", 1)
                family = task.split("(", 1)[0]
                counts[family] = counts.get(family, 0) + int(count)
            elif not line.startswith("    "):
                inside = False
    return counts


def test_local_scheduler_end_to_end_then_nothing_to_do(tmp_path: Path,
                                                       truth_features: dict) -> None:
    root = make_root(tmp_path / "run", truth_features)
    first = run_luigi(root, "--local-scheduler")
    assert first.returncode == 0, first.stderr[-3000:]
    ap = LocalAccessPoint(EMODEL, emodel_dir=root)
    assert ap.is_validated()
    validated = ap.select_models(only_validated=True, only_best=False)
    assert len(validated) >= 2
    for model in validated:
        assert ap.sonata_exists(model.seed)
        assert (ap.export_dir("sonata", model.seed) / "nodes.h5").is_file()
        assert model.features and model.threshold_data is not None
        assert ap.optimisation_state(model.seed) is OptimisationState.COMPLETED
    before = ap.final_path.read_bytes()
    second = run_luigi(root, "--local-scheduler")
    assert second.returncode == 0
    assert "complete ones were encountered" in second.stderr
    assert ran_tasks(second.stderr) == {}
    assert ap.final_path.read_bytes() == before


def test_failing_recipe_exits_non_zero_with_the_error(tmp_path: Path,
                                                      truth_features: dict) -> None:
    root = make_root(tmp_path / "run", truth_features, optimiser="GA")
    result = run_luigi(root, "--local-scheduler")
    assert result.returncode != 0
    assert "optimiser" in result.stderr and "IBEA" in result.stderr
    # A task that fails at run time: the features file is gone and nothing can extract it.
    root2 = make_root(tmp_path / "run2", truth_features)
    (root2 / "config/features/hh.json").unlink()
    result = run_luigi(root2, "--local-scheduler")
    assert result.returncode == 30, result.stderr[-2000:]
    assert "no e-features file" in result.stderr
    assert "failed" in result.stderr


def test_unreachable_batches_fail_with_counts(tmp_path: Path, truth_features: dict) -> None:
    root = make_root(tmp_path / "run", truth_features, validation_threshold=1e-9,
                     optimisation_batch_size=1, max_n_batch=2)
    result = run_luigi(root, "--local-scheduler")
    assert result.returncode == 30
    assert "0 validated of 2 models tried in 2 batches of 1; 2 needed" in result.stderr
    ap = LocalAccessPoint(EMODEL, emodel_dir=root)
    assert sorted(ap.get_final()) == [f"{EMODEL}__1", f"{EMODEL}__2"]  # exactly 2 batches


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def luigid(tmp_path: Path):
    """A real luigid on 127.0.0.1 (free port, temporary state and logs), stopped by pid."""
    port = free_port()
    state = tmp_path / "luigid"
    state.mkdir()
    pidfile = state / "luigid.pid"
    subprocess.run([LUIGID, "--background", "--address", "127.0.0.1", "--port", str(port),
                    "--pidfile", str(pidfile), "--logdir", str(state),
                    "--state-path", str(state / "state.pickle")], check=True, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/task_list", timeout=2).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield port
    pid = int(pidfile.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)


def scheduler_tasks(port: int, status: str) -> dict:
    query = urllib.parse.urlencode({"data": json.dumps({"status": status})})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/task_list?{query}",
                                timeout=10) as reply:
        return json.loads(reply.read())["response"]


def test_two_workers_on_one_luigid(tmp_path: Path, truth_features: dict, luigid: int) -> None:
    # Optimisations long enough (max_ngen 5) that a worker starting a second late still
    # finds one to run.
    root = make_root(tmp_path / "run", truth_features, n_model=3, optimisation_batch_size=3,
                     max_n_batch=1, max_ngen=5)
    # --no-lock: two workers of the same command on one host (luigi's pid lock would stop
    # the second).
    command = luigi_command(root, "EModelCreation", "--scheduler-host", "127.0.0.1",
                            "--scheduler-port", str(luigid), "--no-lock")
    workers = [subprocess.Popen(command, cwd=root.parent, env=luigi_env(root),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    # A worker that leaves tasks to the other one ends with luigi's not_run (25) or
    # already_running (10): nothing failed (no 30, 35, 40).
    codes = sorted(w.returncode for w in workers)
    assert set(codes) <= {0, 10, 25}, outputs[0][-2000:] + outputs[1][-2000:]
    summaries = [out.split("===== Luigi Execution Summary =====")[-2] for out in outputs]
    assert not any(re.search(r"^\* \d+ failed", summary, re.MULTILINE)
                   for summary in summaries)
    runs = [ran_tasks(out).get("Optimise", 0) for out in outputs]
    assert sum(runs) == 3  # three seeds, each optimised exactly once over both workers
    assert all(runs), runs  # both workers took part
    done = scheduler_tasks(luigid, "DONE")
    assert sum(1 for task_id in done if task_id.startswith("Optimise_")) == 3
    ap = LocalAccessPoint(EMODEL, emodel_dir=root)
    final = json.loads(ap.final_path.read_text())
    assert sorted(final) == [f"{EMODEL}__1", f"{EMODEL}__2", f"{EMODEL}__3"]
    assert all(ap.sonata_exists(s) for s in (1, 2, 3))


def test_sigterm_during_optimise_then_resume(tmp_path: Path, truth_features: dict) -> None:
    settings = {"max_ngen": 6, "n_model": 1, "optimisation_batch_size": 1, "max_n_batch": 1}
    straight = make_root(tmp_path / "straight", truth_features, **settings)
    assert run_luigi(straight, "--local-scheduler").returncode == 0
    root = make_root(tmp_path / "stopped", truth_features, **settings)
    ap = LocalAccessPoint(EMODEL, emodel_dir=root)
    worker = subprocess.Popen(luigi_command(root, "EModelCreation", "--local-scheduler",
                                            "--no-lock"),
                              cwd=root.parent, env=luigi_env(root), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while (ap.read_optimisation_progress(1) or {}).get("generation", 0) < 3:
        assert worker.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=120)
    assert worker.returncode != 0
    assert "stopped on request" in stderr
    assert ap.optimisation_state(1) is OptimisationState.IN_PROGRESS
    generation = ap.read_optimisation_progress(1)["generation"]
    assert 3 <= generation < 6
    assert not ap.has_best_model(1)
    rerun = run_luigi(root, "--local-scheduler")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    a = LocalAccessPoint(EMODEL, emodel_dir=straight).get_emodels()[0]
    b = ap.get_emodels()[0]
    assert a.parameters == b.parameters and a.fitness == b.fitness
    shutil.rmtree(tmp_path / "straight")
