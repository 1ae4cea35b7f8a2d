"""Latency of the final.json calls of LocalAccessPoint, with and without the stat cache.

Run from the repository root::

    python benchmarks/access_point.py            # 100, 1,000 and 10,000 stored models
    python benchmarks/access_point.py --sizes 100 1000 --profile

For each size a fresh run root (the test project layout) gets a final.json of that many
models shaped like real optimisation results (40 objectives in ``fitness`` and ``features``,
15 parameters, a few validation objectives). Each call is repeated until it has run for a
while and its mean time is printed (amortised: the cached read path costs one ``stat``, and
one parse per version of the file). "uncached" is the same call with
``FinalStore(..., use_cache=False)``, which parses final.json on every call.

``store_emodel`` stores new seeds, so final.json grows by a few entries during its
measurement; it includes the fsyncs of the file and its folder. "2 writers alternating" is
store_emodel by two access points with separate stores, standing for two processes: each
store follows a version of final.json its store has not read yet, so it parses it first.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the test project layout (conftest.make_project)

from conftest import EMODEL, make_project  # noqa: E402

from luigi_emodel import LocalAccessPoint  # noqa: E402
from luigi_emodel.access_point.final_store import FinalStore  # noqa: E402

from _timing import fmt, per_call  # noqa: E402  (this folder, first on sys.path)

#: Goals (seconds per call) at 10,000 stored models.
GOALS = {"has_best_model": 50e-6, "store_emodel": 100e-3}

PROTOCOLS = ["IDrest_130", "IDrest_200", "IDrest_280", "IV_-100", "IV_-40", "APWaveform_360",
             "RMPProtocol", "RinProtocol"]
FEATURES = ["mean_frequency", "AP_amplitude", "AHP_depth", "inv_first_ISI", "time_to_first_spike",
            "voltage_base", "steady_state_voltage_stimend", "ohmic_input_resistance_vb_ssse"]
PARAMETERS = [
    "gNaTs2_tbar_NaTs2_t.apical", "gSKv3_1bar_SKv3_1.apical", "gImbar_Im.apical",
    "gNaTa_tbar_NaTa_t.axonal", "gK_Tstbar_K_Tst.axonal", "gamma_CaDynamics_DC0.axonal",
    "gNap_Et2bar_Nap_Et2.axonal", "gSK_E2bar_SK_E2.axonal", "gCa_HVAbar_Ca_HVA2.axonal",
    "gK_Pstbar_K_Pst.axonal", "gSKv3_1bar_SKv3_1.axonal", "decay_CaDynamics_DC0.axonal",
    "gCa_LVAstbar_Ca_LVAst.axonal", "g_pas.all", "e_pas.all",
]


def model(seed: int) -> dict[str, Any]:
    """A stored model as an optimisation produces it, with values that differ per seed."""
    objectives = [f"{p}.soma.v.{f}" for p in PROTOCOLS for f in FEATURES][:40]
    scale = 1.0 + seed * 1e-4
    return {
        "emodel": EMODEL, "seed": seed,
        "parameters": {name: 0.0123456789 * scale * (i + 1) for i, name in enumerate(PARAMETERS)},
        "fitness": {name: 0.987654321 * scale * (i % 7) for i, name in enumerate(objectives)},
        "features": {name: -65.4321098765 * scale + i for i, name in enumerate(objectives)},
        "validation_fitness": {f"IDhyperpol_{a}.soma.v.{f}": 0.5 * scale
                               for a in (150, 250) for f in FEATURES[:3]},
        "validated": None,
        "pdfs": [],
    }


def access_point(root: Path) -> LocalAccessPoint:
    return LocalAccessPoint(EMODEL, emodel_dir=root, species="rat", brain_region="SSCX",
                            iteration_tag="it1")


def populate(root: Path, count: int) -> LocalAccessPoint:
    """A run root whose final.json holds ``count`` models written as store_emodel writes them."""
    make_project(root)
    ap = access_point(root)
    ap.store_emodel(model(0))
    template = json.loads(ap.final_path.read_text())[ap.get_model_name_for_final(0)]
    content = {}
    for seed in range(count):
        entry = {**template, **model(seed)}
        entry["score"] = sum(entry["fitness"].values())
        content[ap.get_model_name_for_final(seed)] = entry
    ap.save_final(content)
    return ap


def measure(ap: LocalAccessPoint, count: int, cached: bool, next_seed: list[int],
            quick: bool) -> dict[str, tuple[float, float]]:
    ap.final_store = FinalStore.for_path(ap.final_path, root=ap.emodel_dir, use_cache=cached)
    slow = count >= 10_000 and not cached
    budget = 0.3 if quick else 1.0

    def store(_: int) -> None:
        ap.store_emodel(model(next_seed[0]))
        next_seed[0] += 1

    # A second writer with its own store object stands for another process: every store then
    # follows a version this store has not seen, and parses it first.
    other = access_point(ap.emodel_dir)
    other.final_store = FinalStore(ap.final_path, root=ap.emodel_dir, use_cache=cached)

    def alternate(i: int) -> None:
        (other if i % 2 else ap).store_emodel(model(next_seed[0]))
        next_seed[0] += 1

    def wall_cpu(call: Callable[[int], Any], max_calls: int) -> tuple[float, float]:
        timing = per_call(call, budget, max_calls)
        return timing["wall"], timing["cpu"]

    return {
        "has_best_model": wall_cpu(lambda i: ap.has_best_model(i % count), 200_000),
        "is_checked_by_validation": wall_cpu(lambda i: ap.is_checked_by_validation(i % count),
                                             200_000),
        "get_emodels": wall_cpu(lambda i: ap.get_emodels(), 3 if slow else 1000),
        "store_emodel": wall_cpu(store, 5 if slow else 200),
        "store_emodel, 2 writers alternating": wall_cpu(alternate, 4 if slow else 200),
    }


def profile(ap: LocalAccessPoint, seed: int) -> str:
    """cProfile of 5 store_emodel calls (cached), the top entries by own time."""
    ap.final_store = FinalStore.for_path(ap.final_path, root=ap.emodel_dir)
    profiler = cProfile.Profile()
    profiler.enable()
    for offset in range(5):
        ap.store_emodel(model(seed + offset))
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--quick", action="store_true", help="shorter timing loops")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of store_emodel at the largest size")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-access-point-") as tmp:
        for count in args.sizes:
            root = Path(tmp) / f"n{count}"
            ap = populate(root, count)
            size = ap.final_path.stat().st_size
            next_seed = [10_000_000]
            cached = measure(ap, count, True, next_seed, args.quick)
            uncached = measure(ap, count, False, next_seed, args.quick)
            rows.append((count, size, cached, uncached))
            print(f"measured {count} models ({size / 1e6:.1f} MB)", file=sys.stderr)
        if args.profile:
            print(profile(ap, 20_000_000))

    calls = list(rows[0][2])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cores, load average {load:.1f} at the end; per call, wall time "
          f"(CPU time of this process)\n")
    print("| call | models | final.json | cached | uncached | cached / uncached (wall) |")
    print("|---|---:|---:|---:|---:|---:|")
    for call in calls:
        for count, size, cached, uncached in rows:
            (wall, cpu), (wall_u, cpu_u) = cached[call], uncached[call]
            print(f"| {call} | {count:,} | {size / 1e6:.1f} MB | {fmt(wall)} ({fmt(cpu)}) | "
                  f"{fmt(wall_u)} ({fmt(cpu_u)}) | {wall / wall_u:.4f} |")
    print()
    missed = 0
    for count, _, cached, _ in rows:
        if count != 10_000:
            continue
        for call, goal in GOALS.items():
            wall = cached[call][0]
            met = wall <= goal
            missed += not met
            print(f"goal: {call} at {count:,} models <= {fmt(goal)}: {fmt(wall)} "
                  f"({'met' if met else 'MISSED'})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
