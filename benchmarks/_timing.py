"""Timing helpers shared by the benchmarks, standard library only.

``_reference_side.py`` imports this module too, in the reference's own virtual environment,
so it must not import luigi_emodel or anything outside the standard library.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any


def per_call(call: Callable[[int], Any], budget: float, max_calls: int,
             warm_up: bool = True) -> dict[str, float]:
    """Mean wall and CPU seconds per call of ``call(i)``, i = 0, 1, ...

    Repeated for ``budget`` seconds or ``max_calls`` calls (at least one), after one untimed
    call ``call(-1)`` if ``warm_up``. CPU time (user + system of this process) does not count
    time spent waiting for a core on a busy machine, nor waiting for the disk (fsync); wall
    time counts both.
    """
    if warm_up:
        call(-1)
    calls = 0
    start, cpu = time.perf_counter(), time.process_time()
    elapsed = 0.0
    while calls == 0 or (elapsed < budget and calls < max_calls):
        call(calls)
        calls += 1
        elapsed = time.perf_counter() - start
    return {"wall": elapsed / calls, "cpu": (time.process_time() - cpu) / calls, "calls": calls}


def fmt(seconds: float, ms_decimals: int = 1) -> str:
    """``12.3 µs``, ``45.6 ms`` or ``7.89 s``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.{ms_decimals}f} ms"
    return f"{seconds:.2f} s"


def access_point_calls(job: dict[str, Any], open_access_point: Callable[[], Any],
                       entry: Callable[[Any, int], Any]) -> dict[str, Any]:
    """``has_best_model``, ``get_emodels`` and ``store_emodel`` timed with ``per_call``, the
    same way on both sides of ``reference.py``.

    Args:
        job: ``count`` stored models, ``budget`` seconds and ``max_calls`` per call,
            ``first_new_seed`` for the stores.
        open_access_point: a new access point on the run root.
        entry: ``entry(writer, seed)``, what ``writer.store_emodel`` takes for ``seed``.
    """
    count, budget, max_calls = job["count"], job["budget"], job["max_calls"]
    access_point = open_access_point()
    results: dict[str, Any] = {}
    results["has_best_model"] = per_call(lambda i: access_point.has_best_model(i % count),
                                         budget, max_calls["has_best_model"])
    found = [0]

    def get_emodels(_: int) -> None:
        found[0] = len(access_point.get_emodels())

    results["get_emodels"] = per_call(get_emodels, budget, max_calls["get_emodels"])
    results["get_emodels"]["models"] = found[0]
    # The reference's store_emodel adds the stored entry's fields to its access point's own
    # metadata, which get_emodels then filters on: stores get an access point of their own
    # (on both sides, alike).
    writer = open_access_point()
    next_seed = [job["first_new_seed"]]

    def store(_: int) -> None:
        writer.store_emodel(entry(writer, next_seed[0]))
        next_seed[0] += 1

    results["store_emodel"] = per_call(store, budget, max_calls["store_emodel"], warm_up=False)
    results["stored_seeds"] = list(range(job["first_new_seed"], next_seed[0]))
    return results


def answers_timed(checks: list[tuple[str, int]], exists: Callable[[str, int], bool]
                  ) -> dict[str, Any]:
    """``exists(kind, seed)`` for every check, with the wall and CPU seconds of the loop and
    the count of each ``kind:answer``."""
    answers: Counter[str] = Counter()
    start, cpu = time.perf_counter(), time.process_time()
    for kind, seed in checks:
        answers[f"{kind}:{exists(kind, seed)}"] += 1
    return {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu,
            "answers": dict(answers)}
