"""Timing helpers shared by the benchmarks, standard library only.

``_reference_side.py`` imports this module too, in the reference's own virtual environment,
so it must not import luigi_emodel or anything outside the standard library.
"""

from __future__ import annotations

import time
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
