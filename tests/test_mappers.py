"""The map backends: real process pools, a real ipyparallel cluster and a real dask
LocalCluster, all on 127.0.0.1, each giving exactly the serial optimisation for a seed."""

from __future__ import annotations

import multiprocessing
import socket
from pathlib import Path
from typing import Any

import pytest
from science_project import EMODEL, TRUE_PARAMETERS, ground_truth_features, make_hh_project

from luigi_emodel import LocalAccessPoint
from luigi_emodel.exceptions import ConfigurationError, EModelError, EvaluationError
from luigi_emodel.science.evaluator import build_evaluator
from luigi_emodel.science.mappers import BACKENDS, BackendError, map_backend
from luigi_emodel.science.optimisation import read_checkpoint, run_optimisation, store_best_model

# No filterwarnings marks: with the versions installed here (distributed 2026.8, ipyparallel
# 9.2, Python 3.11) no backend warns in the test process, on start, use or shutdown (checked
# over repeated runs with setup.cfg's "error"). A third-party warning that appears with another
# version gets a narrowly scoped mark here, with the reason, rather than a global ignore.

SEED = 11
WORKERS = 2
IBEA_BUDGET = {"optimiser": "IBEA", "max_ngen": 2, "optimisation_params": {"offspring_size": 6}}
CMA_BUDGET = {"optimiser": "SO-CMA", "max_ngen": 2, "optimisation_params": {"offspring_size": 6}}


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Feature targets simulated at the true parameters (so that scores are informative)."""
    root = make_hh_project(tmp_path_factory.mktemp("truth"))
    evaluator = build_evaluator(LocalAccessPoint(EMODEL, emodel_dir=root))
    return ground_truth_features(evaluator.evaluate(TRUE_PARAMETERS).features)


def optimise(root: Path, targets: dict[str, Any], map_function: Any,
             budget: dict[str, Any]) -> dict[str, Any]:
    """Run one seed in its own run root; return what must not depend on the backend."""
    make_hh_project(root, features=targets, **budget)
    access_point = LocalAccessPoint(EMODEL, emodel_dir=root)
    outcome = run_optimisation(access_point, SEED, map_function=map_function)
    assert outcome.completed
    store_best_model(access_point, SEED)
    (stored,) = access_point.get_final().values()
    checkpoint = read_checkpoint(access_point.checkpoint_path(SEED))
    result = {
        "stored": (stored["parameters"], stored["fitness"], stored["score"]),
        "population": [(list(ind), ind.fitness.values) for ind in checkpoint["population"]],
        "halloffame": [(list(ind), ind.fitness.values) for ind in checkpoint["halloffame"]],
        "generation": checkpoint["generation"],
    }
    if "CMA_es" in checkpoint:
        strategy = checkpoint["CMA_es"]
        result["cma"] = (strategy.centroid.tolist(), float(strategy.sigma), strategy.C.tolist())
    return result


@pytest.fixture(scope="module")
def serial_ibea(targets: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, Any]:
    with map_backend("serial") as map_function:
        result = optimise(tmp_path_factory.mktemp("serial"), targets, map_function,
                          IBEA_BUDGET)
    # Guards against a vacuous comparison: a real population, scored on every objective.
    assert len(result["population"]) >= IBEA_BUDGET["optimisation_params"]["offspring_size"]
    assert all(len(fitness) == len(result["stored"][1]) for _, fitness in result["population"])
    return result


def assert_same_run(result: dict[str, Any], reference: dict[str, Any]) -> None:
    # Exact equality on purpose: the backends must not change a single bit.
    assert result["stored"] == reference["stored"]
    assert result["halloffame"] == reference["halloffame"]
    assert result["population"] == reference["population"]
    assert result == reference


def worker_is_daemon(_: Any) -> bool:
    return multiprocessing.current_process().daemon


@pytest.mark.parametrize("backend", ["multiprocessing", "ipyparallel", "dask"])
def test_backend_reproduces_serial_ibea(backend: str, targets: dict[str, Any],
                                        serial_ibea: dict[str, Any], tmp_path: Path) -> None:
    with map_backend(backend, WORKERS) as map_function:
        result = optimise(tmp_path / backend, targets, map_function, IBEA_BUDGET)
        # An exception raised by an evaluation reaches the caller with its own type.
        evaluator = build_evaluator(LocalAccessPoint(EMODEL, emodel_dir=tmp_path / backend))
        with pytest.raises(EvaluationError, match="parameters missing"):
            map_function(evaluator.evaluate_with_dicts, [{}])
        assert map_function(abs, range(-5, 0)) == [5, 4, 3, 2, 1]  # input order
        assert map_function(abs, []) == []
        if backend != "ipyparallel":  # engines do not see the tests folder on sys.path
            # Non-daemonic workers: an evaluation may start processes of its own.
            assert map_function(worker_is_daemon, range(WORKERS)) == [False] * WORKERS
    assert_same_run(result, serial_ibea)


def test_so_cma_multiprocessing_reproduces_serial(targets: dict[str, Any],
                                                  tmp_path: Path) -> None:
    with map_backend("serial") as map_function:
        serial = optimise(tmp_path / "serial", targets, map_function, CMA_BUDGET)
    with map_backend("multiprocessing", WORKERS) as map_function:
        parallel = optimise(tmp_path / "multiprocessing", targets, map_function, CMA_BUDGET)
    assert "cma" in serial  # the strategy (centroid, sigma, covariance) is compared too
    assert_same_run(parallel, serial)


def test_serial_map_is_builtin_map_as_a_list() -> None:
    with map_backend("serial", 4) as map_function:
        result = map_function(str, iter(range(3)))
    assert result == ["0", "1", "2"]


def test_unknown_backend_names_the_accepted_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        with map_backend("mpi"):
            pass
    message = str(caught.value)
    assert "'mpi'" in message
    assert all(name in message for name in BACKENDS)


@pytest.mark.parametrize("kwargs, field", [
    ({"backend": "multiprocessing", "dask_scheduler": "tcp://127.0.0.1:8786"}, "dask_scheduler"),
    ({"backend": "dask", "ipyparallel_profile": "default"}, "ipyparallel_profile"),
    ({"backend": "multiprocessing", "workers": 0}, "workers"),
    ({"backend": "dask", "timeout": 0}, "timeout"),
])
def test_bad_or_misplaced_options_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        with map_backend(**kwargs):
            pass


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_dask_scheduler_is_a_clear_error() -> None:
    address = f"tcp://127.0.0.1:{closed_port()}"
    with pytest.raises(BackendError, match="dask_scheduler") as caught:
        with map_backend("dask", dask_scheduler=address, timeout=2):
            pass
    assert address in str(caught.value)
    assert isinstance(caught.value, EModelError)


def test_malformed_dask_scheduler_address_is_a_clear_error() -> None:
    with pytest.raises(BackendError, match="dask_scheduler: .*'not an address'"):
        with map_backend("dask", dask_scheduler="not an address", timeout=2):
            pass


def test_missing_ipyparallel_profile_is_a_clear_error(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # never the user's profiles
    with pytest.raises(BackendError, match="no-such-profile"):
        with map_backend("ipyparallel", ipyparallel_profile="no-such-profile", timeout=2):
            pass


def test_unpicklable_function_is_a_clear_error() -> None:
    with map_backend("multiprocessing", 1) as map_function:
        with pytest.raises(BackendError, match="picklable"):
            map_function(lambda x: x, [1])



def sleep_and_log(item: tuple[float, str]) -> float:
    """Sleep ``item[0]`` seconds and append the item to the log file ``item[1]``."""
    import time

    seconds, log = item
    time.sleep(seconds)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"{seconds}\n")
    return seconds * 2


class Slow:
    """A picklable function of a parameter vector: sleeps ``vector[0]`` seconds."""

    def __init__(self, log: str) -> None:
        self.log = log

    def __call__(self, vector: list[float]) -> float:
        return sleep_and_log((vector[0], self.log))


def test_multiprocessing_dispatches_predicted_longest_first(tmp_path: Path) -> None:
    log = tmp_path / "order.log"
    function = Slow(str(log))
    # One worker runs the items in dispatch order, which the log shows.
    with map_backend("multiprocessing", 1) as map_function:
        first = map_function(function, [[0.01, 0.0], [0.6, 1.0], [0.15, 0.5]])
        assert [float(x) for x in log.read_text().split()] == [0.01, 0.6, 0.15]  # no history
        log.unlink()
        # Near [0.01, 0.0], near [0.15, 0.5] and near [0.6, 1.0] (measured slowest): the item
        # predicted slowest goes first, then by predicted duration; results in input order.
        items = [[0.02, 0.05], [0.16, 0.45], [0.55, 0.95]]
        second = map_function(function, items)
        assert [float(x) for x in log.read_text().split()] == [0.55, 0.16, 0.02]
        # Other functions and items that are not vectors keep their order.
        assert map_function(abs, [-1, -3, -2]) == [1, 3, 2]
    assert first == [0.02, 1.2, 0.3]
    assert second == [0.04, 0.32, 1.1]


def test_longest_first_compares_items_of_the_same_part_only() -> None:
    from luigi_emodel.science.mappers import _LongestFirst

    scheduler = _LongestFirst()
    # (parameters, part): part 0 is slow near 0.0 and fast near 1.0; part 1 is fast.
    scheduler.record("f", [([0.0], 0), ([0.0], 1), ([1.0], 0), ([1.0], 1)],
                     [1.0, 0.1, 0.2, 0.05])
    items = [([0.05], 1), ([0.9], 0), ([0.0], 0), ([0.95], 1)]
    # Predicted 0.1, 0.2, 1.0, 0.05: the nearest item of the same part, not of the other.
    assert scheduler.order("f", items) == [2, 1, 0, 3]
    # A part never measured, another function, or items that are not vectors: input order.
    assert scheduler.order("f", [([0.0], 0), ([0.0], 2)]) == [0, 1]
    assert scheduler.order("g", items) == [0, 1, 2, 3]
    assert scheduler.order("f", [{"a": 1}, {"a": 2}]) == [0, 1]
