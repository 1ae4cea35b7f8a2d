"""Map functions that spread evaluations over serial, multiprocessing, ipyparallel or dask.

:func:`map_backend` is a context manager: it starts (or connects to) the engine, yields a
``map_function(func, iterable) -> list`` with results in input order, and stops what it
started on exit. The optimisers (:func:`luigi_emodel.science.optimisation.run_optimisation`)
and the other fan-out steps take that map function; nothing else here knows about them.

Every backend gives results **bit-identical** to serial for a given seed:

* the evaluations are deterministic and run in fresh worker processes;
* the optimiser's random numbers never move: a map call leaves the calling process's
  global ``random`` and ``numpy.random`` states exactly as it found them, and dask's size
  estimate of lists and tuples is made deterministic (see :func:`_register_dask_sizeof`).

The parallel backends dispatch the items of each call longest-first, predicting
an item's duration from the nearest item evaluated before (see :class:`_LongestFirst`): the
end of a generation then waits for a short evaluation rather than a long one.

The function and the items are sent to the workers with :mod:`pickle`, so they must be
picklable (``EModelEvaluator`` is). Each worker process unpickles a given function once and
reuses it for every later item, so an evaluator builds its NEURON cell once per worker
instead of once per evaluation.

Worker processes are never daemonic, so an evaluation may start processes of its own.
``multiprocessing`` starts its workers with the ``forkserver`` method (POSIX) or ``spawn``:
never a plain ``fork`` of a process that may already hold NEURON state and threads. As with
any non-fork start method, a script that uses this backend must guard its entry point with
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import multiprocessing
import os
import pickle
import random
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from luigi_emodel.exceptions import ConfigurationError, EModelError

__all__ = [
    "BACKENDS",
    "BackendError",
    "MapFunction",
    "default_workers",
    "map_backend",
]

logger = logging.getLogger(__name__)

#: The accepted backend names.
BACKENDS = ("serial", "multiprocessing", "ipyparallel", "dask")

#: ``map_function(func, iterable) -> list`` of results in input order.
MapFunction = Callable[[Callable[[Any], Any], Iterable[Any]], list[Any]]

#: Default limit (s) to start a local cluster or to connect to a running one.
DEFAULT_TIMEOUT = 60.0


class BackendError(EModelError):
    """A parallel backend that cannot start, connect, or keep its workers alive."""


def default_workers() -> int:
    """The number of CPUs this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# -- worker side ---------------------------------------------------------------------------------

# Functions already unpickled in this (worker) process, by digest of their pickle. Keeping the
# same object alive is what lets an evaluator keep its NEURON cell between evaluations; two
# entries are enough for a caller alternating between two evaluators.
_WORKER_FUNCTIONS: OrderedDict[str, Callable[[Any], Any]] = OrderedDict()
_WORKER_CACHE_SIZE = 2


class _RemoteFailure:
    """An exception raised in a worker, carried back as a result (see ``_CachedCall``)."""

    def __init__(self, error: BaseException, text: str) -> None:
        self.error = error
        self.text = text


class _CachedCall:
    """Calls a pickled function on one item, unpickling the function once per process.

    Args:
        digest: SHA-256 of ``payload``, the cache key.
        payload: ``pickle.dumps(func)``.
        capture_errors: return exceptions as :class:`_RemoteFailure` instead of raising them
            (for engines that would otherwise replace them with their own error type).
    """

    def __init__(self, digest: str, payload: bytes, capture_errors: bool = False) -> None:
        self.digest = digest
        self.payload = payload
        self.capture_errors = capture_errors

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.digest, self.payload, self.capture_errors))

    def _function(self) -> Callable[[Any], Any]:
        func = _WORKER_FUNCTIONS.get(self.digest)
        if func is None:
            func = pickle.loads(self.payload)  # noqa: S301 - sent by our own parent process
            _WORKER_FUNCTIONS[self.digest] = func
            while len(_WORKER_FUNCTIONS) > _WORKER_CACHE_SIZE:
                _WORKER_FUNCTIONS.popitem(last=False)
        else:
            _WORKER_FUNCTIONS.move_to_end(self.digest)
        return func

    def __call__(self, item: Any) -> Any:
        if not self.capture_errors:
            return self._function()(item)
        try:
            return self._function()(item)
        except Exception as error:  # handed back to the caller, which re-raises it
            import traceback

            text = traceback.format_exc()
            try:
                pickle.dumps(error)
            except Exception:  # an exception that cannot travel: keep its type and message
                error = BackendError(f"{type(error).__name__}: {error}")
            return _RemoteFailure(error, text)


class _TimedCall(_CachedCall):
    """A :class:`_CachedCall` returning ``(result, seconds spent in the function)``.

    Unpickling the function (once per worker) is not counted: it is no property of the item.
    """

    def __call__(self, item: Any) -> Any:
        with contextlib.suppress(Exception):  # a failure to unpickle is the call's to report
            self._function()
        start = time.perf_counter()
        result = super().__call__(item)
        if isinstance(result, _RemoteFailure):
            return result
        return result, time.perf_counter() - start


class _LongestFirst:
    """Orders the items of a map call by predicted duration, the longest first.

    A generational optimiser waits, at the end of each generation, for its last evaluation
    while the other workers have nothing left to do. Dispatching the long evaluations first
    leaves short ones for the end, which shortens that wait. An item's duration is predicted
    as the measured duration of the nearest item already evaluated by the same function
    (items are parameter vectors; each dimension is scaled by the spread seen so far). An
    offspring lies near the individuals it was bred from, whose firing, and so simulation
    cost, it mostly shares. An item ``(vector, *labels)``, such as the ``(parameters, part)``
    of :func:`~luigi_emodel.science.optimisation.split_evaluations`, is compared only with
    items of the same labels (the same protocol). When an item has no prediction (nothing
    comparable measured yet, or not numeric), the call keeps its input order. Only the
    dispatch order changes: results come back in input order, and each evaluation is the
    same whichever worker runs it, when.
    """

    #: Items remembered per function and labels (oldest dropped first).
    history = 4096

    def __init__(self) -> None:
        self._seen: dict[tuple[str, Any], tuple[np.ndarray, np.ndarray]] = {}

    @staticmethod
    def _split(item: Any) -> tuple[Any, np.ndarray] | None:
        """``(labels, vector)`` of an item, or None if it is neither form."""
        try:
            return (), np.asarray(item, dtype=float).ravel()
        except (TypeError, ValueError):
            pass
        if not isinstance(item, tuple) or not item:
            return None
        try:
            vector = np.asarray(item[0], dtype=float).ravel()
            labels = item[1:]
            hash(labels)
        except (TypeError, ValueError):
            return None
        return labels, vector

    def _groups(self, items: list[Any]) -> dict[Any, tuple[list[int], np.ndarray]] | None:
        """Item indices and vectors by labels; None if an item is not comparable."""
        members: dict[Any, tuple[list[int], list[np.ndarray]]] = {}
        for index, item in enumerate(items):
            split = self._split(item)
            if split is None or not np.all(np.isfinite(split[1])):
                return None
            indices, vectors = members.setdefault(split[0], ([], []))
            indices.append(index)
            vectors.append(split[1])
        groups = {}
        for labels, (indices, vectors) in members.items():
            if len({vector.size for vector in vectors}) != 1:
                return None
            groups[labels] = (indices, np.asarray(vectors))
        return groups

    def order(self, digest: str, items: list[Any]) -> list[int]:
        """Indices of ``items`` in dispatch order."""
        natural = list(range(len(items)))
        groups = self._groups(items) if len(items) > 1 else None
        if not groups:
            return natural
        predicted = np.zeros(len(items))
        for labels, (indices, vectors) in groups.items():
            seen = self._seen.get((digest, labels))
            if seen is None or seen[0].shape[1] != vectors.shape[1]:
                return natural
            points, seconds = seen
            span = np.ptp(points, axis=0)
            span[span == 0] = 1.0
            distances = np.linalg.norm((vectors[:, None, :] - points[None, :, :]) / span,
                                       axis=2)
            predicted[indices] = seconds[np.argmin(distances, axis=1)]
        # A stable sort: equal predictions keep their input order.
        return sorted(natural, key=lambda index: -predicted[index])

    def record(self, digest: str, items: list[Any], seconds: list[float]) -> None:
        groups = self._groups(items)
        for labels, (indices, vectors) in (groups or {}).items():
            durations = np.asarray([seconds[index] for index in indices], dtype=float)
            seen = self._seen.get((digest, labels))
            if seen is not None and seen[0].shape[1] == vectors.shape[1]:
                vectors = np.concatenate([seen[0], vectors])
                durations = np.concatenate([seen[1], durations])
            self._seen[(digest, labels)] = (vectors[-self.history:], durations[-self.history:])


def _cached_call(func: Callable[[Any], Any], capture_errors: bool = False,
                 timed: bool = False) -> _CachedCall:
    try:
        payload = pickle.dumps(func, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        raise BackendError(
            f"{func!r} cannot be sent to worker processes (it must be picklable: a module-level "
            f"function or a picklable object's method): {type(error).__name__}: {error}"
        ) from error
    kind = _TimedCall if timed else _CachedCall
    return kind(hashlib.sha256(payload).hexdigest(), payload, capture_errors)


def _raise_remote_failures(results: list[Any], backend: str) -> list[Any]:
    for result in results:
        if isinstance(result, _RemoteFailure):
            error = result.error
            if hasattr(error, "add_note"):  # Python 3.11+
                error.add_note(f"raised in a {backend} worker:\n{result.text}")
            raise error
    return results


# -- caller side ---------------------------------------------------------------------------------


def _rng_neutral(map_function: MapFunction) -> MapFunction:
    """Leave the caller's global random states as they were before the map call.

    A remote map has no business drawing from the caller's random generators, yet engines do,
    in threads of the calling process: a LocalCluster's scheduler picks the worker to fetch
    each result from with ``random.choice`` (``gather_from_workers``, one draw per result,
    measured with distributed 2026.8), dask samples long lists with ``random.sample`` to
    estimate their size, and jupyter_client (under ipyparallel) culls its message-digest
    history with ``random.sample`` after 65,536 messages. DEAP and CMA draw from those very
    generators, so a single foreign draw changes the rest of the optimisation. These draws
    happen while the caller waits for the results, so restoring the states when the map
    returns makes every remote map neutral for the optimiser.
    """

    def neutral_map(func: Callable[[Any], Any], iterable: Iterable[Any]) -> list[Any]:
        py_state = random.getstate()
        np_state = np.random.get_state()
        try:
            return map_function(func, iterable)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

    return neutral_map


def _longest_first(raw_map: Callable[[_CachedCall, list[Any]], list[Any]],
                   capture_errors: bool = False) -> MapFunction:
    """A backend's map function, dispatching the items longest-first (:class:`_LongestFirst`).

    ``raw_map(call, items)`` runs a :class:`_TimedCall` on the items, starting them in the
    order given, and returns the outcomes in that order.
    """
    scheduler = _LongestFirst()

    def ordered_map(func: Callable[[Any], Any], iterable: Iterable[Any]) -> list[Any]:
        call = _cached_call(func, capture_errors=capture_errors, timed=True)
        items = list(iterable)
        order = scheduler.order(call.digest, items)
        outcomes = raw_map(call, [items[index] for index in order])
        results: list[Any] = [None] * len(items)
        seconds = [0.0] * len(items)
        for index, (result, duration) in zip(order, outcomes):
            results[index], seconds[index] = result, duration
        scheduler.record(call.digest, items, seconds)
        return results

    return ordered_map


def _serial_map(func: Callable[[Any], Any], iterable: Iterable[Any]) -> list[Any]:
    return list(map(func, iterable))


def _positive_workers(workers: int | None, field: str = "workers") -> int | None:
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigurationError(f"{field}: expected a positive integer or None, got {workers!r}")
    return workers


@contextlib.contextmanager
def map_backend(
    backend: str = "serial",
    workers: int | None = None,
    *,
    ipyparallel_profile: str | None = None,
    dask_scheduler: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Iterator[MapFunction]:
    """Start (or connect to) a parallel backend and yield its map function.

    Args:
        backend: one of :data:`BACKENDS`.
        workers: worker processes to start (default: the CPUs available). With a running
            ipyparallel cluster or dask scheduler, the number of engines or workers to wait
            for (default 1). Ignored by ``serial``.
        ipyparallel_profile: connect to the running ipyparallel cluster of this profile
            instead of starting one (``ipyparallel`` only).
        dask_scheduler: connect to this dask scheduler address (``tcp://host:port``) instead
            of starting a ``LocalCluster`` (``dask`` only).
        timeout: limit in seconds to start the local cluster, or to connect to a running one
            and see its first workers.

    Yields:
        ``map_function(func, iterable) -> list``, results in input order. ``func`` must be
        picklable for every backend but ``serial``.

    Raises:
        ConfigurationError: an unknown backend, or an option the backend does not take.
        BackendError: the engine cannot start, the scheduler or cluster cannot be reached
            within ``timeout``, or a worker process died.
    """
    name = str(backend).strip().lower()
    if name not in BACKENDS:
        raise ConfigurationError(
            f"backend: unknown map backend {backend!r}; expected one of {', '.join(BACKENDS)}"
        )
    workers = _positive_workers(workers)
    if ipyparallel_profile and name != "ipyparallel":
        raise ConfigurationError(
            f"ipyparallel_profile: set to {ipyparallel_profile!r} but the backend is {name!r}"
        )
    if dask_scheduler and name != "dask":
        raise ConfigurationError(
            f"dask_scheduler: set to {dask_scheduler!r} but the backend is {name!r}"
        )
    if not timeout or timeout <= 0:
        raise ConfigurationError(f"timeout: expected a positive number of seconds, got {timeout!r}")

    if name == "serial":
        yield _serial_map
        return
    with contextlib.ExitStack() as stack:
        if name == "multiprocessing":
            map_function = _start_multiprocessing(stack, workers or default_workers())
        elif name == "ipyparallel":
            map_function = _start_ipyparallel(stack, workers, ipyparallel_profile, timeout)
        else:
            map_function = _start_dask(stack, workers, dask_scheduler, timeout)
        yield _rng_neutral(map_function)


# -- multiprocessing -----------------------------------------------------------------------------


# "__main__" is Python's own default; the rest is what every evaluation imports.
_FORKSERVER_PRELOAD = ("__main__", "luigi_emodel.science.evaluator", "neuron", "bluepyopt.ephys",
                       "efel")


def _start_method() -> str:
    # forkserver forks each worker from a small, single-threaded server process that has
    # already imported the package: cheaper than spawn, safer than forking a caller that
    # may hold NEURON state, threads (Luigi, dask) or open locks.
    if "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return "spawn"


def _start_multiprocessing(stack: contextlib.ExitStack, workers: int) -> MapFunction:
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    method = _start_method()
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # Import the evaluator's heavy dependencies once in the server rather than in every
        # worker: measured, it halves the time to the first evaluation against spawn. The
        # server is started once per process; this has no effect if it is already running.
        context.set_forkserver_preload(list(_FORKSERVER_PRELOAD))
    # ProcessPoolExecutor's workers are not daemonic (unlike multiprocessing.Pool's), so an
    # evaluation may fork processes of its own.
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    stack.push(lambda kind, error, trace: _shutdown_executor(executor, failed=kind is not None))
    logger.info("multiprocessing map: %d worker processes (%s)", workers, method)

    def pool_map(call: _CachedCall, items: list[Any]) -> list[Any]:
        try:
            # The executor hands items to free workers in submission order.
            return list(executor.map(call, items))
        except BrokenProcessPool as error:
            raise BackendError(
                f"multiprocessing map: a worker process died ({error}); the pool cannot be "
                f"used any more"
            ) from error

    return _longest_first(pool_map)


def _shutdown_executor(executor: Any, failed: bool) -> None:
    if not failed:
        executor.shutdown(wait=True, cancel_futures=True)
        return
    # Leaving on an error (or an interrupt): do not wait for evaluations still running.
    processes = list(getattr(executor, "_processes", {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


# -- ipyparallel ---------------------------------------------------------------------------------


def _start_ipyparallel(stack: contextlib.ExitStack, workers: int | None, profile: str | None,
                       timeout: float) -> MapFunction:
    try:
        import ipyparallel as ipp
    except ImportError as error:
        raise BackendError(
            "backend 'ipyparallel' needs the ipyparallel package: pip install "
            "'luigi_emodel[ipyparallel]'"
        ) from error

    if profile:
        try:
            client = ipp.Client(profile=profile, timeout=timeout)
        except Exception as error:
            raise BackendError(
                f"ipyparallel_profile: cannot connect to the cluster of profile {profile!r} "
                f"(is `ipcluster start --profile={profile}` running?): "
                f"{type(error).__name__}: {error}"
            ) from error
        stack.callback(client.close)
        wanted = workers or 1
        where = f"the cluster of profile {profile!r}"
    else:
        wanted = workers or default_workers()
        # A private profile folder: connection files and logs stay out of ~/.ipython and are
        # removed with the cluster.
        profile_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="luigi_emodel-ipp-"))
        cluster = ipp.Cluster(
            n=wanted, profile_dir=profile_dir, controller_ip="127.0.0.1",
            engine_timeout=max(1, math.ceil(timeout)), log_level=logging.WARNING,
            # Engines are handed the controller's connection info when it is ready, so the
            # default 1 s pause before starting them is not needed.
            delay=0,
            # The controller registers an engine at its first heartbeat: at the default 3 s
            # period, 2 local engines took 6.7 s to be ready, at 0.5 s 2.2 s. A missed beat
            # is only acted on after 10 periods.
            controller_args=["--HeartMonitor.period=500"],
        )
        stack.callback(_stop_ipp_cluster, cluster)
        try:
            cluster.start_cluster_sync()
            client = cluster.connect_client_sync()
        except Exception as error:
            raise BackendError(
                f"ipyparallel: cannot start a local cluster of {wanted} engines: "
                f"{type(error).__name__}: {error}"
            ) from error
        stack.callback(client.close)
        where = "the local cluster"
    try:
        client.wait_for_engines(wanted, timeout=timeout, interactive=False)
    except Exception as error:
        raise BackendError(
            f"ipyparallel: {len(client.ids)} of {wanted} engines of {where} ready after "
            f"{timeout:g} s: {type(error).__name__}: {error}"
        ) from error
    view = client.load_balanced_view()
    logger.info("ipyparallel map: %d engines", len(client.ids))

    def ipp_map(call: _CachedCall, items: list[Any]) -> list[Any]:
        if not items:  # ipyparallel returns a bare list, not an AsyncMapResult, for these
            return []
        # The load-balanced view assigns tasks to free engines in submission order.
        # Not map_sync: it swallows KeyboardInterrupt and then waits for every result anyway.
        pending = view.map_async(call, items)
        try:
            results = list(pending.get())
        except BaseException as error:
            with contextlib.suppress(Exception):
                pending.abort()  # drop the tasks not started yet
            if isinstance(error, ipp.error.KernelError):
                # Exceptions of the function come back as results: this one is the engine's
                # own (an engine that died, a result that cannot be sent back).
                raise BackendError(f"ipyparallel map: {type(error).__name__}: {error}") \
                    from error
            raise
        return _raise_remote_failures(results, "ipyparallel")

    # ipyparallel would replace a worker's exception with its RemoteError: carry the
    # original back instead, so that callers see the package's own exceptions.
    return _longest_first(ipp_map, capture_errors=True)


def _stop_ipp_cluster(cluster: Any) -> None:
    try:
        cluster.stop_cluster_sync()
    except Exception as error:  # never hide the error that made us leave
        logger.warning("ipyparallel: stopping the local cluster failed: %s", error)


# -- dask ----------------------------------------------------------------------------------------

_DASK_SIZEOF_REGISTERED = False


def _register_dask_sizeof() -> None:
    """Make dask's size estimate of lists and tuples deterministic.

    dask estimates the memory of a list or tuple of more than 10 items (an individual of a
    model with more than 10 free parameters, a list of scores) from ``random.sample`` of 10
    of them, drawn from Python's *global* generator, the very generator DEAP's IBEA draws its
    crossovers, mutations and selections from; when that happens in the client process, a
    parallel run drifts away from the serial one. Sampling 10 evenly spaced items gives an
    estimate of the same quality without touching any random state, whatever the thread or
    the moment. (The map function also restores the random states, see ``_rng_neutral``;
    this removes the cause rather than repairing its effect.) The registration is
    process-wide and only changes how dask estimates sizes.
    """
    global _DASK_SIZEOF_REGISTERED
    if _DASK_SIZEOF_REGISTERED:
        return
    from dask.sizeof import sizeof

    def sizeof_sequence(seq: list[Any] | tuple[Any, ...]) -> int:
        samples = 10
        count = len(seq)
        if count <= samples:
            return sys.getsizeof(seq) + sum(sizeof(item) for item in seq)
        step = count / samples
        picked = (seq[int(i * step)] for i in range(samples))
        return sys.getsizeof(seq) + int(count / samples * sum(sizeof(item) for item in picked))

    sizeof.register(list)(sizeof_sequence)
    sizeof.register(tuple)(sizeof_sequence)
    _DASK_SIZEOF_REGISTERED = True


def _start_dask(stack: contextlib.ExitStack, workers: int | None, scheduler: str | None,
                timeout: float) -> MapFunction:
    try:
        import dask
        from distributed import Client, KilledWorker, LocalCluster
    except ImportError as error:
        raise BackendError(
            "backend 'dask' needs dask.distributed: pip install 'luigi_emodel[dask]'"
        ) from error

    _register_dask_sizeof()
    # Nannies read this whenever they (re)start a worker, so it stays set for the whole run.
    # Non-daemonic workers may start processes of their own. It applies to the workers this
    # process starts; a remote cluster's workers take their own configuration.
    stack.enter_context(dask.config.set({"distributed.worker.daemon": False}))
    if scheduler:
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except Exception as error:
            raise BackendError(
                f"dask_scheduler: cannot connect to {scheduler!r} (tried for up to {timeout:g} s): "
                f"{type(error).__name__}: {error}"
            ) from error
        stack.callback(client.close)
        wanted = workers or 1
        try:
            client.wait_for_workers(wanted, timeout=timeout)
        except Exception as error:
            raise BackendError(
                f"dask_scheduler: {scheduler!r} has fewer than {wanted} workers after "
                f"{timeout:g} s: {type(error).__name__}: {error}"
            ) from error
    else:
        wanted = workers or default_workers()
        try:
            # One thread per worker process: NEURON simulates one cell at a time per process.
            cluster = LocalCluster(n_workers=wanted, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
        except Exception as error:
            raise BackendError(
                f"dask: cannot start a LocalCluster of {wanted} workers: "
                f"{type(error).__name__}: {error}"
            ) from error
        stack.callback(cluster.close)
        # No client.upload_file: local workers share this process's working directory and
        # sys.path, and re-imported copies would break file-relative paths.
        client = Client(cluster, timeout=timeout, set_as_default=False)
        stack.callback(client.close)
    logger.info("dask map: %s", client)

    def dask_map(call: _CachedCall, items: list[Any]) -> list[Any]:
        # pure=False: no hashing of every item into its key, and no silent reuse of an
        # earlier result for an equal item. The scheduler ranks the tasks of one map call in
        # the order given (Client.map's internal priorities).
        futures = client.map(call, items, pure=False)
        try:
            return list(client.gather(futures))
        except KilledWorker as error:
            raise BackendError(
                f"dask map: workers died while running a task ({error}); see the workers' logs"
            ) from error
        finally:
            client.cancel(futures)

    return _longest_first(dask_map)
