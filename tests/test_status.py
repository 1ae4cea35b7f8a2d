"""``luigi-emodel status`` on real runs of the Hodgkin-Huxley project.

Two run roots are built once per module with the real optimisation, validation and export:

* half-finished: seed 1 optimised to the end, stored, validated (passes) and exported to
  SONATA; seed 2 stopped by its stop event after generation 1; seed 3 optimised to the end
  but not stored yet;
* finished: a copy of the half-finished run where seed 2 ran to the end, and seeds 2 and 3
  were stored and validated (both fail: the threshold was lowered to 0 meanwhile).

The tables are checked through the installed console script in a subprocess, the JSON rows
through ``main(argv)``; one test takes the status again and again while an optimisation runs
in another process.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from science_project import EMODEL, make_hh_project

from luigi_emodel import LocalAccessPoint
from luigi_emodel.cli import main
from luigi_emodel.science.export import export_sonata
from luigi_emodel.science.optimisation import run_optimisation, store_best_model
from luigi_emodel.science.validation import validate
from luigi_emodel.status import checkpoint_seeds, emodel_status, format_status

EXECUTABLE = Path(sys.executable).with_name("luigi-emodel")
CHILD = Path(__file__).with_name("_optimise_child.py")

MAX_NGEN = 3
SETTINGS: dict[str, Any] = {"max_ngen": MAX_NGEN, "optimisation_params": {"offspring_size": 4},
                            "validation_threshold": 1e9}

needs_script = pytest.mark.skipif(not EXECUTABLE.is_file(),
                                  reason=f"console script not installed at {EXECUTABLE}")


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script; never raises on a non-zero exit (the tests check it)."""
    return subprocess.run([str(EXECUTABLE), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120, check=False)


def table(stdout: str) -> tuple[str, list[list[str]], str]:
    """(title, rows split into cells, summary line) of a one-e-model table."""
    title, header, *rows, summary = stdout.rstrip("\n").splitlines()
    assert re.split(r"\s{2,}", header.strip()) == [
        "seed", "optimisation", "best score", "validated", "exported (SONATA)"]
    return title, [re.split(r"\s{2,}", row.strip()) for row in rows], summary


def access_point(root: Path) -> LocalAccessPoint:
    return LocalAccessPoint(EMODEL, emodel_dir=root)


def stored_score(root: Path, seed: int) -> float:
    return json.loads((root / "final.json").read_text())[f"{EMODEL}__{seed}"]["score"]


def progress(root: Path, seed: int) -> dict[str, Any]:
    return json.loads(access_point(root).optimisation_progress_path(seed).read_text())


@pytest.fixture(scope="module")
def half_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_hh_project(tmp_path_factory.mktemp("half_run"), **SETTINGS)
    ap = access_point(root)
    assert run_optimisation(ap, seed=1).completed
    stop = threading.Event()
    stop.set()  # checked at the first generation boundary: the run stops after generation 1
    outcome = run_optimisation(ap, seed=2, stop_event=stop)
    assert not outcome.completed and outcome.generation == 1
    assert run_optimisation(ap, seed=3).completed
    store_best_model(ap, seed=1)
    assert [m.validated for m in validate(ap, seeds=[1])] == [True]
    assert export_sonata(ap, seeds=[1])
    return root


@pytest.fixture(scope="module")
def finished_run(half_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finished_run") / "run"
    shutil.copytree(half_run, root)
    ap = access_point(root)
    assert run_optimisation(ap, seed=2).completed  # resumes after generation 1
    store_best_model(ap, seed=2)
    store_best_model(ap, seed=3)
    make_hh_project(root, **{**SETTINGS, "validation_threshold": 0.0})
    assert [m.validated for m in validate(access_point(root))] == [False, False]
    return root


@needs_script
def test_half_finished_run_table(half_run: Path) -> None:
    result = run_cli("status", "--emodel-dir", half_run)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    title, rows, summary = table(result.stdout)
    assert title == f"{EMODEL} (iteration none, run root {half_run})"
    assert rows == [
        ["1", "done", f"{stored_score(half_run, 1):.4g}", "yes", "yes"],
        ["2", f"generation 1/{MAX_NGEN}", f"{progress(half_run, 2)['best_score']:.4g}",
         "not checked", "no"],
        ["3", "done", f"{progress(half_run, 3)['best_score']:.4g}", "not checked", "no"],
    ]
    assert summary == "1 validated of 1 checked (1 needed)"
    # The run root defaults to the working directory; --emodel names the recipe.
    same = run_cli("status", "--emodel", EMODEL, cwd=half_run)
    assert same.returncode == 0 and same.stdout == result.stdout.replace(str(half_run),
                                                                        str(half_run.resolve()))


@needs_script
def test_finished_run_table(finished_run: Path) -> None:
    result = run_cli("status", "--emodel-dir", finished_run, "--recipes-path", "recipes.json")
    assert result.returncode == 0, result.stderr
    _, rows, summary = table(result.stdout)
    assert rows == [
        ["1", "done", f"{stored_score(finished_run, 1):.4g}", "yes", "yes"],
        ["2", "done", f"{stored_score(finished_run, 2):.4g}", "no", "no"],
        ["3", "done", f"{stored_score(finished_run, 3):.4g}", "no", "no"],
    ]
    assert summary == "1 validated of 3 checked (1 needed)"
    # Another iteration of the same run root has nothing yet.
    other = run_cli("status", "--emodel-dir", finished_run, "--iteration-tag", "v2")
    assert other.returncode == 0, other.stderr
    assert "no seed found" in other.stdout
    assert other.stdout.rstrip().endswith("0 validated of 0 checked (1 needed)")


def test_json_rows_through_main(half_run: Path, finished_run: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--emodel-dir", str(half_run), "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    [status] = json.loads(captured.out)["emodels"]
    assert {k: status[k] for k in ("emodel", "iteration", "run_root", "n_model", "n_validated",
                                   "n_checked", "ignored_checkpoints")} == {
        "emodel": EMODEL, "iteration": None, "run_root": str(half_run), "n_model": 1,
        "n_validated": 1, "n_checked": 1, "ignored_checkpoints": 0}
    rows = {row["seed"]: row for row in status["seeds"]}
    assert sorted(rows) == [1, 2, 3]
    assert rows[1] == {
        "emodel": EMODEL, "iteration": None, "seed": 1, "state": "completed",
        "optimisation": "done", "generation": MAX_NGEN, "max_ngen": MAX_NGEN,
        "optimisation_best_score": progress(half_run, 1)["best_score"],
        "stored": True, "stored_score": stored_score(half_run, 1),
        "best_score": stored_score(half_run, 1), "validated": True,
        "exported_sonata": True, "note": None,
    }
    assert rows[2]["state"] == "in_progress" and rows[2]["generation"] == 1
    assert rows[2]["optimisation"] == f"generation 1/{MAX_NGEN}"
    assert rows[2]["best_score"] == progress(half_run, 2)["best_score"]
    assert (rows[2]["stored"], rows[2]["validated"], rows[2]["exported_sonata"]) == (
        False, None, False)
    assert rows[3]["state"] == "completed" and rows[3]["stored"] is False

    # Every e-model of the recipes, in the finished run: all seeds done, all checked.
    assert main(["status", "--emodel-dir", str(finished_run), "--json"]) == 0
    [status] = json.loads(capsys.readouterr().out)["emodels"]
    assert [(r["seed"], r["state"], r["validated"]) for r in status["seeds"]] == [
        (1, "completed", True), (2, "completed", False), (3, "completed", False)]
    assert (status["n_validated"], status["n_checked"]) == (1, 3)


def test_files_of_a_running_optimisation_and_other_metadata(half_run: Path,
                                                            tmp_path: Path) -> None:
    root = tmp_path / "run"
    shutil.copytree(half_run, root)
    ap = access_point(root)
    folder = ap.checkpoint_path(1).parent
    # A checkpoint whose sidecar is not written yet, with content that is no pickle at all:
    # status must not unpickle it.
    ap.checkpoint_path(7).write_bytes(b"\x80\x04\x95 truncated")
    # A damaged sidecar is reported on its row; the other rows are still given.
    ap.checkpoint_path(6).write_bytes(b"")
    ap.optimisation_progress_path(6).write_text('{"generation": ')
    # Staging and temporary files of a running optimisation are no checkpoints.
    (folder / "emodel=hhcell__seed=9.staging.pkl").write_bytes(b"")
    (folder / "emodel=hhcell__seed=9.staging.pkl.tmp").write_bytes(b"")
    (folder / ".emodel=hhcell__seed=8.pkl.1234.abcd1234.tmp").write_bytes(b"")
    # A checkpoint of other metadata sharing the folder.
    other = LocalAccessPoint(EMODEL, emodel_dir=root, species="mouse")
    other.checkpoint_path(5).write_bytes(b"")

    assert checkpoint_seeds(ap) == ([1, 2, 3, 6, 7], 1)
    status = emodel_status(ap)
    rows = {row.seed: row for row in status.seeds}
    assert sorted(rows) == [1, 2, 3, 6, 7]
    assert rows[7].optimisation == f"generation ?/{MAX_NGEN}" and rows[7].note is None
    assert rows[7].best_score is None and not rows[7].stored
    assert rows[6].optimisation == f"generation ?/{MAX_NGEN}"
    assert rows[6].note is not None and "unreadable" in rows[6].note
    text = format_status(status)
    assert "note: seed 6: " in text
    assert "note: 1 checkpoint(s) of other metadata" in text
    assert re.search(r"^\s+7\s+generation \?/3\s+-\s+not checked\s+no$", text, re.M), text

    # The metadata options select the other checkpoint (and none of the stored models).
    mouse = emodel_status(LocalAccessPoint(EMODEL, emodel_dir=root, species="mouse"))
    assert [row.seed for row in mouse.seeds] == [5] and mouse.ignored_checkpoints == 5
    assert main(["status", "--emodel-dir", str(root), "--species", "mouse", "--json"]) == 0


def test_status_while_an_optimisation_runs(half_run: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "run"
    shutil.copytree(half_run, root)
    max_ngen = 8
    make_hh_project(root, **{**SETTINGS, "max_ngen": max_ngen})
    seen = []

    def seed_4() -> dict[str, Any] | None:
        assert main(["status", "--emodel-dir", str(root), "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)["emodels"][0]["seeds"]
        return next((row for row in rows if row["seed"] == 4), None)

    with subprocess.Popen([sys.executable, str(CHILD), str(root), "4"],
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if not line.startswith("gen "):
                continue
            # The child prints "gen k" after its sidecar says k: the status says k or later.
            generation = int(line.split()[1])
            row = seed_4()
            assert row is not None and row["generation"] >= generation
            if row["generation"] < max_ngen:
                assert row["state"] == "in_progress"
            # At max_ngen the run records its completion just after the last commit.
            seen.append(row["generation"])
        assert child.wait(timeout=60) == 0
    assert seen == sorted(seen) and len(seen) == max_ngen - 1  # generations 2..max_ngen
    row = seed_4()
    assert row is not None and row["optimisation"] == "done"


@needs_script
@pytest.mark.parametrize("case", ["no recipes", "empty recipes", "unknown emodel", "bad json"])
def test_errors_are_one_line_and_exit_1(tmp_path: Path, case: str) -> None:
    args: list[str] = []
    if case == "empty recipes":
        (tmp_path / "recipes.json").write_text("{}")
        expected = "recipes.json: no recipe"
    elif case == "unknown emodel":
        make_hh_project(tmp_path)
        args = ["--emodel", "nope"]
        expected = f"recipes.json: no recipe for emodel 'nope' (known: {EMODEL})"
    elif case == "bad json":
        (tmp_path / "recipes.json").write_text("{")
        expected = "recipes.json: invalid JSON"
    else:
        expected = "recipes.json: recipes file not found"
    result = run_cli("status", "--emodel-dir", tmp_path, *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"luigi-emodel: error: {expected}"), result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_every_emodel_of_the_recipes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import EMODEL as CONFTEST_EMODEL
    from conftest import make_project, stored_entry

    make_project(tmp_path)
    make_project(tmp_path, emodel="second")
    ap = LocalAccessPoint("second", emodel_dir=tmp_path, iteration_tag="it1")
    ap.store_emodel({**stored_entry(4, score=3.0, validated=True), "emodel": "second"})
    args = ["status", "--emodel-dir", str(tmp_path), "--iteration-tag", "it1"]
    assert main([*args, "--json"]) == 0
    statuses = json.loads(capsys.readouterr().out)["emodels"]
    assert [(s["emodel"], s["iteration"]) for s in statuses] == [
        (CONFTEST_EMODEL, "it1"), ("second", "it1")]
    assert statuses[0]["seeds"] == []
    [row] = statuses[1]["seeds"]
    assert (row["seed"], row["optimisation"], row["best_score"], row["validated"]) == (
        4, "not started", 3.0, True)
    assert main(args) == 0
    first, second = capsys.readouterr().out.split("\n\n")
    assert first.startswith(f"{CONFTEST_EMODEL} (iteration it1")
    assert first.rstrip().endswith("0 validated of 0 checked (2 needed)")
    assert re.search(r"^\s+4\s+not started\s+3\s+yes\s+no$", second, re.M), second
    assert second.rstrip().endswith("1 validated of 1 checked (2 needed)")
