"""Figures on the Hodgkin-Huxley ground-truth project: the four figures in PDF and PNG at the
access point's paths, the plot flags, the errors, and the plot tasks through ``luigi``.

The project has three step protocols for optimisation and one threshold-based validation
protocol (so the traces figure reuses the threshold currents stored at validation). Two seeds
are optimised, stored and validated once for the module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import science_project as sp

from luigi_emodel import LocalAccessPoint
from luigi_emodel.exceptions import ConfigurationError, OptimisationError, StorageError
from luigi_emodel.schemas.stored_model import StoredModel
from luigi_emodel.science import plotting
from luigi_emodel.science.evaluator import EModelEvaluator, build_evaluator
from luigi_emodel.science.optimisation import run_optimisation, store_best_model
from luigi_emodel.science.validation import validate

REPO = Path(__file__).resolve().parent.parent
LUIGI = str(Path(sys.executable).with_name("luigi"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FLAGS = ("plot_optimisation", "plot_traces", "plot_scores", "plot_distributions")
VALIDATION_PROTOCOL = sp.VALIDATION_PROTOCOL
TRUTH_SEED = 3
SETTINGS = {"max_ngen": 2, "optimisation_params": {"offspring_size": 6},
            "validation_threshold": 1000.0, "plot_optimisation": True}


def features_config(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The hh targets plus a threshold-based validation protocol; placeholder means without
    ``values``, else the given feature values as means."""
    config = sp.with_validation_protocol(sp.placeholder_features())
    return config if values is None else sp.ground_truth_features(values, config=config)


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Targets of the true parameters."""
    root = tmp_path_factory.mktemp("hh_truth")
    sp.make_hh_project(root, features=features_config())
    truth = build_evaluator(LocalAccessPoint(sp.EMODEL, emodel_dir=root),
                            include_validation=True).evaluate(sp.TRUE_PARAMETERS)
    assert truth.failed is None
    return features_config(truth.features)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, targets: dict[str, Any]) -> Path:
    """A run root with seeds 1 and 2 optimised and stored, the true parameters stored as
    seed ``TRUTH_SEED`` (a model sure to have threshold data), all validated; no figure."""
    root = tmp_path_factory.mktemp("hh_plots")
    sp.make_hh_project(root, features=targets, **SETTINGS)
    ap = LocalAccessPoint(sp.EMODEL, emodel_dir=root)
    for seed in (1, 2):
        assert run_optimisation(ap, seed).completed
        store_best_model(ap, seed)
    truth = build_evaluator(ap).evaluate(sp.TRUE_PARAMETERS)
    ap.store_emodel(StoredModel.from_result(ap.emodel_metadata, TRUTH_SEED,
                                            sp.TRUE_PARAMETERS, truth.scores))
    verdicts = {m.seed: m.validated for m in validate(ap)}
    assert verdicts == {1: True, 2: True, TRUTH_SEED: True}
    return root


class Drawn:
    """The figures of the module's run root, drawn once."""

    def __init__(self, root: Path) -> None:
        self.ap = LocalAccessPoint(sp.EMODEL, emodel_dir=root)
        self.stored = {m.seed: m for m in self.ap.get_emodels()}
        self.evaluations: list[dict[str, Any]] = []
        real_evaluate = EModelEvaluator.evaluate

        def counting_evaluate(evaluator: EModelEvaluator, *args: Any, **kwargs: Any) -> Any:
            self.evaluations.append(kwargs)
            return real_evaluate(evaluator, *args, **kwargs)

        # A spy around the real evaluation: it still simulates, and counts.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(EModelEvaluator, "evaluate", counting_evaluate)
            self.files = {
                ("optimisation", 1): plotting.plot_optimisation(self.ap, 1),
                ("traces", TRUTH_SEED): plotting.plot_traces(self.ap, TRUTH_SEED),
                ("scores", 2): plotting.plot_scores(self.ap, 2),
                ("parameters_distribution", None): plotting.plot_parameter_distributions(
                    self.ap, ground_truth=sp.TRUE_PARAMETERS),
            }


@pytest.fixture(scope="module")
def drawn(root: Path) -> Drawn:
    return Drawn(root)


def check_png(path: Path) -> tuple[int, ...]:
    """A real, non-empty PNG image: signature, size, pixels; returns its shape."""
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    assert len(data) > 1024, (path, len(data))
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4), pixels.shape
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400, pixels.shape
    # Not a blank canvas: a figure has ink.
    assert pixels[..., :3].min() < 0.5
    return pixels.shape


@pytest.mark.parametrize("kind, seed", [
    ("optimisation", 1), ("traces", TRUTH_SEED), ("scores", 2), ("parameters_distribution", None),
])
def test_figure_in_pdf_and_png_at_the_access_point_paths(drawn: Drawn, root: Path, kind: str,
                                                         seed: int | None) -> None:
    files = drawn.files[(kind, seed)]
    assert files == [drawn.ap.figure_path(kind, seed, "pdf"),
                     drawn.ap.figure_path(kind, seed, "png")]
    for path in files:
        assert path.parent == root / "figures" / sp.EMODEL / kind
        assert path.is_file()
    pdf, png = files
    assert pdf.read_bytes().startswith(b"%PDF-") and pdf.stat().st_size > 1024
    check_png(png)
    # Atomic writes leave no temporary file behind.
    assert sorted(p.name for p in png.parent.iterdir()) == sorted(p.name for p in files)


def test_traces_simulate_the_stored_model_once_with_its_threshold_data(drawn: Drawn) -> None:
    [call] = drawn.evaluations
    assert call["keep_traces"] is True
    stored = drawn.stored[TRUTH_SEED].threshold_data
    assert stored and stored["bpo_threshold_current"] is not None
    assert call["threshold_data"] == stored


def test_redrawing_replaces_the_files_with_identical_bytes(drawn: Drawn) -> None:
    pdf, png = drawn.files[("scores", 2)]
    before = pdf.read_bytes(), png.read_bytes()
    inode = png.stat().st_ino
    assert plotting.plot_scores(drawn.ap, 2) == [pdf, png]
    assert (pdf.read_bytes(), png.read_bytes()) == before
    assert png.stat().st_ino != inode  # a new file renamed over the old one
    assert sorted(p.name for p in png.parent.iterdir()) == sorted([pdf.name, png.name])


def set_settings(root: Path, **settings: Any) -> None:
    recipes = json.loads((root / "recipes.json").read_text())
    recipes[sp.EMODEL]["pipeline_settings"].update(settings)
    (root / "recipes.json").write_text(json.dumps(recipes, indent=2))


def test_disabled_flags_write_nothing(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("figures"))
    set_settings(copy, **{flag: False for flag in FLAGS})
    ap = LocalAccessPoint(sp.EMODEL, emodel_dir=copy)
    assert plotting.plot_optimisation(ap, 1) == []
    assert plotting.plot_traces(ap, 1) == []
    assert plotting.plot_scores(ap, 1) == []
    assert plotting.plot_parameter_distributions(ap) == []
    assert not (copy / "figures").exists()
    # One flag on: that figure only.
    set_settings(copy, plot_scores=True)
    ap = LocalAccessPoint(sp.EMODEL, emodel_dir=copy)
    assert plotting.plot_traces(ap, 1) == []
    assert plotting.plot_scores(ap, 1) == [ap.figure_path("scores", 1, "pdf"),
                                           ap.figure_path("scores", 1, "png")]
    assert [p.name for p in (copy / "figures" / sp.EMODEL).iterdir()] == ["scores"]


def test_missing_inputs_are_clear_errors(root: Path, tmp_path: Path) -> None:
    ap = LocalAccessPoint(sp.EMODEL, emodel_dir=root)
    with pytest.raises(StorageError, match=r"final\.json: no stored model 'hhcell__9'"):
        plotting.plot_scores(ap, 9)
    with pytest.raises(StorageError, match="'hhcell__9'.*seed 9"):
        plotting.plot_traces(ap, 9)
    with pytest.raises(OptimisationError, match="no checkpoint for seed 9: optimise first"):
        plotting.plot_optimisation(ap, 9)
    empty = sp.make_hh_project(tmp_path / "empty", **SETTINGS)
    with pytest.raises(StorageError, match="no stored model of 'hhcell' to plot"):
        plotting.plot_parameter_distributions(LocalAccessPoint(sp.EMODEL, emodel_dir=empty))
    assert not (empty / "figures").exists()
    with pytest.raises(ConfigurationError, match="figure kind"):
        plotting.figure_enabled(ap, "thumbnail")


def test_package_imports_without_matplotlib_and_says_what_is_missing(root: Path) -> None:
    # matplotlib made unimportable in a fresh interpreter.
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "import luigi_emodel.tasks\n"
        "from luigi_emodel import LocalAccessPoint\n"
        "from luigi_emodel.exceptions import ConfigurationError\n"
        "from luigi_emodel.science.plotting import plot_scores\n"
        f"ap = LocalAccessPoint('hhcell', emodel_dir={str(root)!r})\n"
        "try:\n"
        "    plot_scores(ap, 1)\n"
        "except ConfigurationError as error:\n"
        "    print('error:', error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert "error: figures need matplotlib" in result.stdout
    assert "luigi_emodel[plot]" in result.stdout


# -- the plot tasks through the luigi command --------------------------------------------------


def make_luigi_root(root: Path, targets: dict[str, Any], **settings: Any) -> Path:
    sp.make_hh_project(root, features=targets, **{**SETTINGS, **settings})
    config = (REPO / "luigi.cfg").read_text()
    assert "\nemodel_dir = .\n" in config
    (root / "luigi.cfg").write_text(
        config.replace("\nemodel_dir = .\n", f"\nemodel_dir = {root}\n"))
    return root


def run_luigi(root: Path, task: str, *extra: str) -> subprocess.CompletedProcess:
    # From another folder: nothing may depend on the working directory.
    return subprocess.run(
        [LUIGI, "--module", "luigi_emodel.tasks", task, "--emodel", sp.EMODEL,
         "--local-scheduler", *extra],
        cwd=root.parent, env={**os.environ, "LUIGI_CONFIG_PATH": str(root / "luigi.cfg")},
        capture_output=True, text=True, timeout=300,
    )


def ran_tasks(output: str) -> dict[str, int]:
    """Task family -> how many tasks of it ran, from the worker's "done" log lines (luigi's
    summary shortens long lists)."""
    counts: dict[str, int] = {}
    for family in re.findall(r"\) done +(\w+)\(", output):
        counts[family] = counts.get(family, 0) + 1
    return counts


def test_plot_all_through_luigi_then_nothing_to_do_then_flags_off(
        tmp_path: Path, targets: dict[str, Any]) -> None:
    # Two models needed from batches of one: the second batch runs, and its figures come
    # from PlotAll's dynamic part (its seed is not known before EModelCreation ran).
    root = make_luigi_root(tmp_path / "run", targets, max_ngen=2, n_model=2,
                           optimisation_batch_size=1, max_n_batch=2)
    first = run_luigi(root, "PlotAll")
    assert first.returncode == 0, first.stderr[-3000:]
    ran = ran_tasks(first.stderr)
    assert ran["PlotOptimisation"] == 2 and ran["PlotModels"] == 2, ran
    assert ran["PlotParameterDistributions"] == 1 and ran["PlotAll"] == 1, ran
    ap = LocalAccessPoint(sp.EMODEL, emodel_dir=root)
    assert sorted(m.seed for m in ap.get_emodels()) == [1, 2]
    expected = [ap.figure_path("parameters_distribution", None, "png")] + [
        ap.figure_path(kind, seed, "png")
        for seed in (1, 2) for kind in ("optimisation", "traces", "scores")
    ]
    for png in expected:
        check_png(png)
        assert png.with_suffix(".pdf").is_file()
    written = sorted(p for p in (root / "figures").rglob("*") if p.is_file())
    assert written == sorted(expected + [p.with_suffix(".pdf") for p in expected])

    again = run_luigi(root, "PlotAll")
    assert again.returncode == 0 and ran_tasks(again.stderr) == {}, again.stderr[-3000:]

    # Flags off: every plot task is complete without a figure.
    shutil.rmtree(root / "figures")
    set_settings(root, **{flag: False for flag in FLAGS})
    off = run_luigi(root, "PlotAll")
    assert off.returncode == 0, off.stderr[-3000:]
    assert ran_tasks(off.stderr) == {}
    assert not (root / "figures").exists()
