"""Benchmark of the evaluator on the example cell (configs/example), against plain BluePyOpt.

The example cell (soma, two-section axon stub, dendrites; NaTx, Kdrx, Kmx, Ihx, pas) gets a
fitness configuration of 3 plain step protocols of 3 s (a 2 s step after 700 ms: -0.1 nA,
150 % and 250 % of its 0.09 nA rheobase) with 14 features each, targets taken from its ground
truth. Its mechanisms are compiled with ``compile_mechanisms`` in a temporary copy.

Measured, in one run:

1. **ms per evaluation**, ours (``EModelEvaluator``) and BluePyOpt's ``CellEvaluator`` built the
   plain way (``eFELFeature`` in ``SingletonObjective``, ``SweepProtocol`` with
   ``NrnSquarePulse`` and ``CompRecording``; the same cell model, parameters, protocols,
   features and eFEL settings; ``isolate_protocols=False``; CVODE), on the same parameter sets
   (the ground truth and perturbations of it). Each evaluator runs in a fresh process of its
   own, after one warm-up evaluation, so that neither simulates the other's cell.
2. **share of NEURON** in our evaluation: time inside ``h.continuerun`` / evaluation time.
3. **parallel efficiency** of an IBEA optimisation on 2 worker processes
   (``map_backend("multiprocessing", 2)``): wall time of ``run_optimisation`` against the sum
   of the evaluation times measured inside the workers, divided by 2. The pool is started and
   its workers warmed (modules imported) before the clock starts; each worker's first
   evaluation builds its cell, which counts as evaluation time. The wall time with the pool
   start included is printed too.

The features of both evaluators are compared at every parameter set (they must agree: the
same simulations, the same eFEL). Printed, not asserted; exits with status 1 if a goal is
missed::

    .venv/bin/python benchmarks/evaluation.py [--evaluations 6] [--offspring 16] [--generations 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from luigi_emodel import LocalAccessPoint
from luigi_emodel.science.evaluator import EModelEvaluator, EvaluationSetup, build_evaluator
from luigi_emodel.science.mechanisms import compile_mechanisms
from luigi_emodel.science.optimisation import run_optimisation

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "configs" / "example"
EMODEL = "example"

DELAY, DURATION, TOTAL = 700.0, 2000.0, 3000.0
PROTOCOLS = {"IV_-100": -0.1, "Step_150": 0.136, "Step_250": 0.227}
STEP_FEATURES = [
    "Spikecount", "mean_frequency", "time_to_first_spike", "time_to_last_spike",
    "inv_first_ISI", "inv_last_ISI", "ISI_CV", "adaptation_index2", "AP_height",
    "AP_amplitude", "AP_width", "AHP_depth", "AHP_depth_abs", "voltage_base",
]
IV_FEATURES = [
    "voltage_base", "steady_state_voltage_stimend", "steady_state_voltage", "minimum_voltage",
    "maximum_voltage", "voltage_deflection", "voltage_deflection_vb_ssse",
    "voltage_deflection_begin", "ohmic_input_resistance_vb_ssse", "sag_amplitude",
    "sag_ratio1", "sag_ratio2", "decay_time_constant_after_stim", "Spikecount",
]
EFEL_SETTINGS = {"interp_step": 0.025, "strict_stiminterval": True, "Threshold": -20.0}

GOALS = {"ratio": 0.35, "neuron_share": 0.80, "parallel": 1.05}


# -- the project -----------------------------------------------------------------------------


def features_of(protocol: str) -> list[str]:
    return IV_FEATURES if protocol.startswith("IV") else STEP_FEATURES


def fitness_configuration(targets: dict[str, float | None] | None) -> dict[str, Any]:
    """The 3 protocols and 42 features; means from ``targets`` (placeholders without)."""
    protocols, efeatures = [], []
    for name, amp in PROTOCOLS.items():
        protocols.append({
            "name": name, "protocol_type": "Protocol", "validation": False,
            "stimuli": [{"delay": DELAY, "amp": amp, "duration": DURATION, "totduration": TOTAL,
                         "holding_current": 0.0}],
            "recordings_from_config": [{"type": "CompRecording", "name": f"{name}.soma.v",
                                        "location": "soma", "variable": "v"}],
        })
        for feature in features_of(name):
            value = (targets or {}).get(f"{name}.soma.v.{feature}")
            if targets is not None and value is None:
                continue  # no value at the ground truth (e.g. an ISI feature without spikes)
            mean = 0.0 if value is None else value
            efeatures.append({
                "efel_feature_name": feature, "protocol_name": name, "recording_name": "soma.v",
                "mean": mean, "original_std": max(abs(mean) * 0.1, 0.05),
                "efel_settings": dict(EFEL_SETTINGS),
            })
    return {"protocols": protocols, "efeatures": efeatures}


def make_run_root(root: Path, offspring: int, generations: int) -> LocalAccessPoint:
    """A copy of the example project with a recipe and the step fitness configuration."""
    for folder in ("mechanisms", "morphologies", "config"):
        shutil.copytree(EXAMPLE / folder, root / folder, dirs_exist_ok=True)
    (root / "config/features").mkdir(parents=True, exist_ok=True)
    (root / "config/features/example.json").write_text(json.dumps(fitness_configuration(None)))
    (root / "recipes.json").write_text(json.dumps({EMODEL: {
        "morph_path": "morphologies", "morphology": [["simple_cell", "simple_cell.swc"]],
        "params": "config/params/example.json", "features": "config/features/example.json",
        "pipeline_settings": {
            "optimiser": "IBEA", "optimisation_params": {"offspring_size": offspring},
            "max_ngen": generations, "optimisation_timeout": 600.0,
            "efel_settings": dict(EFEL_SETTINGS), "plot_optimisation": False,
        },
    }}))
    return LocalAccessPoint(EMODEL, emodel_dir=root)


def parameter_sets(access_point: LocalAccessPoint, count: int, seed: int = 11
                   ) -> list[dict[str, float]]:
    """The ground truth, then perturbations of it (each value × 0.7 to 1.3, within bounds)."""
    truth = json.loads((EXAMPLE / "ground_truth.json").read_text())["parameters"]
    bounds = {p.full_name: p.value for p in
              access_point.get_model_configuration().free_parameters}
    rng = random.Random(seed)
    sets = [dict(truth)]
    while len(sets) < count:
        sets.append({name: float(np.clip(value * rng.uniform(0.7, 1.3), *bounds[name]))
                     for name, value in truth.items()})
    return sets


# -- measurements, each in a fresh process ----------------------------------------------------


class _TimedHoc:
    """NEURON's ``h``, with the time spent inside ``continuerun`` added up."""

    def __init__(self, h: Any) -> None:
        object.__setattr__(self, "_h", h)
        object.__setattr__(self, "seconds", 0.0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._h, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._h, name, value)

    def continuerun(self, tstop: float) -> Any:
        start = time.perf_counter()
        try:
            return self._h.continuerun(tstop)
        finally:
            object.__setattr__(self, "seconds", self.seconds + time.perf_counter() - start)


def ground_truth_features(root: str) -> dict[str, float | None]:
    """Our evaluator's features at the ground truth (the targets)."""
    access_point = LocalAccessPoint(EMODEL, emodel_dir=root)
    truth = json.loads((EXAMPLE / "ground_truth.json").read_text())["parameters"]
    result = build_evaluator(access_point, compile_if_needed=False).evaluate(truth)
    if result.failed:
        raise RuntimeError(f"the ground truth does not simulate: {result.failed}")
    return result.features


def measure_ours(root: str, sets: list[dict[str, float]]) -> dict[str, Any]:
    import efel

    access_point = LocalAccessPoint(EMODEL, emodel_dir=root)
    evaluator = build_evaluator(access_point, compile_if_needed=False)
    evaluator.evaluate(sets[0])  # builds the cell
    runtime = evaluator._runtime()
    timed = _TimedHoc(runtime.h)
    runtime.h = timed
    # Time inside eFEL as well (the evaluator calls efel.get_feature_values by attribute).
    efel_seconds = [0.0]
    real_get_feature_values = efel.get_feature_values

    def timed_get_feature_values(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return real_get_feature_values(*args, **kwargs)
        finally:
            efel_seconds[0] += time.perf_counter() - start

    efel.get_feature_values = timed_get_feature_values
    times, features = [], []
    for params in sets:
        start = time.perf_counter()
        result = evaluator.evaluate(params)
        times.append(time.perf_counter() - start)
        features.append(result.features)
    return {"times": times, "neuron": timed.seconds, "efel": efel_seconds[0],
            "features": features}


def bluepyopt_evaluator(access_point: LocalAccessPoint, build_dir: str) -> Any:
    """BluePyOpt's own CellEvaluator of the same model, protocols and features."""
    from bluepyopt import ephys

    from luigi_emodel.science.cell_model import build_cell_model
    from luigi_emodel.science.mechanisms import load_mechanisms

    load_mechanisms(Path(build_dir))
    configuration = access_point.get_model_configuration()
    fitness = access_point.get_fitness_calculator_configuration()
    cell = build_cell_model(configuration, EMODEL, str(access_point.morph_path))
    soma = ephys.locations.NrnSeclistCompLocation(
        name="soma", seclist_name="somatic", sec_index=0, comp_x=0.5)
    protocols = {}
    amplitudes = {}
    for protocol in fitness.protocols:
        stimulus = protocol.stimuli[0]
        amplitudes[protocol.name] = stimulus["amp"]
        protocols[protocol.name] = ephys.protocols.SweepProtocol(
            protocol.name,
            [ephys.stimuli.NrnSquarePulse(
                step_amplitude=stimulus["amp"], step_delay=stimulus["delay"],
                step_duration=stimulus["duration"], total_duration=stimulus["totduration"],
                location=soma)],
            [ephys.recordings.CompRecording(name=f"{protocol.name}.soma.v", location=soma,
                                            variable="v")],
            cvode_active=True,
        )
    objectives = []
    for feature in fitness.efeatures:
        settings = feature.efel_settings
        efeature = ephys.efeatures.eFELFeature(
            feature.name, efel_feature_name=feature.efel_feature_name,
            recording_names={"": f"{feature.protocol_name}.soma.v"},
            stim_start=DELAY, stim_end=DELAY + DURATION, exp_mean=feature.mean,
            exp_std=feature.std, threshold=settings["Threshold"],
            stimulus_current=amplitudes[feature.protocol_name],
            interp_step=settings["interp_step"],
            int_settings={"strict_stiminterval": int(settings["strict_stiminterval"])},
            force_max_score=True, max_score=250.0)
        objectives.append(ephys.objectives.SingletonObjective(feature.name, efeature))
    return ephys.evaluators.CellEvaluator(
        cell_model=cell, param_names=[p.full_name for p in configuration.free_parameters],
        fitness_protocols=protocols,
        fitness_calculator=ephys.objectivescalculators.ObjectivesCalculator(objectives),
        sim=ephys.simulators.NrnSimulator(dt=0.025, cvode_active=True),
        isolate_protocols=False,
    )


def measure_bluepyopt(root: str, build_dir: str, sets: list[dict[str, float]]
                      ) -> dict[str, Any]:
    evaluator = bluepyopt_evaluator(LocalAccessPoint(EMODEL, emodel_dir=root), build_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eFEL's deprecation of reference feature names
        evaluator.evaluate_with_dicts(sets[0])  # warm-up, as for ours
        times = []
        for params in sets:
            start = time.perf_counter()
            evaluator.evaluate_with_dicts(params)
            times.append(time.perf_counter() - start)
        # Not timed: the feature values of the same runs, to check both agree.
        features = []
        for params in sets:
            responses = evaluator.run_protocols(evaluator.fitness_protocols.values(), params)
            values = {}
            for objective in evaluator.fitness_calculator.objectives:
                feature = objective.features[0]
                raw = feature.calculate_feature(responses)
                values[feature.name] = (None if raw is None or np.size(raw) == 0
                                        else float(np.mean(raw)))
            features.append(values)
    return {"times": times, "features": features}


def in_fresh_process(function: Any, *args: Any) -> Any:
    """Run ``function(*args)`` in a new process (NEURON holds one cell set per process)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


# -- the optimisation on 2 workers -------------------------------------------------------------


class TimedEvaluator(EModelEvaluator):
    """Our evaluator, appending each evaluation's duration (inside the worker) to a file."""

    def __init__(self, setup: EvaluationSetup, log_path: str) -> None:
        super().__init__(setup)
        self.log_path = log_path

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "log_path": self.log_path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["setup"], state["log_path"])  # type: ignore[misc]

    def init_simulator_and_evaluate_with_lists(self, param_list: list[float],
                                               target: str = "scores") -> list[float]:
        # time.monotonic: one clock for every process of the machine (CLOCK_MONOTONIC).
        start = time.monotonic()
        scores = super().init_simulator_and_evaluate_with_lists(param_list, target)
        end = time.monotonic()
        # One short line per evaluation, appended atomically (O_APPEND) by either worker.
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {start:.6f} {end:.6f}\n")
        return scores


def _warm(_: int) -> int:
    return os.getpid()


def measure_optimisation(access_point: LocalAccessPoint, workers: int) -> dict[str, Any]:
    from luigi_emodel.science.mappers import map_backend

    log_path = access_point.emodel_dir / "evaluation_times.log"
    evaluator = TimedEvaluator(build_evaluator(access_point, compile_if_needed=False).setup,
                               str(log_path))
    started = time.monotonic()
    with map_backend("multiprocessing", workers) as mapper:
        pids = set(mapper(_warm, range(4 * workers)))
        warm = time.monotonic()
        outcome = run_optimisation(access_point, seed=1, map_function=mapper,
                                   evaluator=evaluator)
        ended = time.monotonic()
    intervals = [(float(start), float(end)) for _, start, end in
                 (line.split() for line in log_path.read_text().splitlines())]
    none_busy, one_busy = _idle_times(intervals, warm, ended, workers)
    return {"wall": ended - warm, "wall_with_start": ended - started,
            "evaluations": len(intervals), "sum": sum(e - s for s, e in intervals),
            "completed": outcome.completed, "generation": outcome.generation,
            "workers_seen": len(pids), "none_busy": none_busy, "not_all_busy": one_busy}


def _idle_times(intervals: list[tuple[float, float]], start: float, end: float,
                workers: int) -> tuple[float, float]:
    """Time (s) during which no worker evaluated, and during which some but not all did."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    none_busy = not_all_busy = 0.0
    busy, last = 0, start
    for moment, change in events + [(end, 0)]:
        if busy == 0:
            none_busy += moment - last
        elif busy < workers:
            not_all_busy += moment - last
        busy, last = busy + change, moment
    return none_busy, not_all_busy


# -- report --------------------------------------------------------------------------------------


def agreement(ours: list[dict], theirs: list[dict]) -> tuple[float, int]:
    """Largest relative difference of the features both give, and how many were compared."""
    worst, compared = 0.0, 0
    for mine, other in zip(ours, theirs):
        for name, value in mine.items():
            if value is None or other.get(name) is None:
                continue
            compared += 1
            worst = max(worst, abs(value - other[name]) / max(abs(other[name]), 1e-9))
    return worst, compared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=6, help="parameter sets timed")
    parser.add_argument("--offspring", type=int, default=16, help="IBEA offspring size")
    parser.add_argument("--generations", type=int, default=3, help="IBEA generations")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_evaluation_") as tmp:
        root = Path(tmp)
        access_point = make_run_root(root, args.offspring, args.generations)
        start = time.perf_counter()
        build_dir = compile_mechanisms(access_point)
        compile_seconds = time.perf_counter() - start
        targets = in_fresh_process(ground_truth_features, str(root))
        configuration = fitness_configuration(targets)
        (root / "config/features/example.json").write_text(json.dumps(configuration))
        access_point = LocalAccessPoint(EMODEL, emodel_dir=root)
        sets = parameter_sets(access_point, args.evaluations)

        ours = in_fresh_process(measure_ours, str(root), sets)
        theirs = in_fresh_process(measure_bluepyopt, str(root), str(build_dir), sets)
        optimisation = measure_optimisation(access_point, args.workers)

    n_features = len(configuration["efeatures"])
    ours_ms = 1000 * float(np.mean(ours["times"]))
    theirs_ms = 1000 * float(np.mean(theirs["times"]))
    ratio = ours_ms / theirs_ms
    neuron_share = ours["neuron"] / sum(ours["times"])
    efel_share = ours["efel"] / sum(ours["times"])
    ideal = optimisation["sum"] / args.workers
    parallel = optimisation["wall"] / ideal
    worst, compared = agreement(ours["features"], theirs["features"])

    print(f"example cell: 3 protocols x {TOTAL / 1000:g} s, {n_features} features, "
          f"{len(sets)} parameter sets; mechanisms compiled in {compile_seconds:.1f} s")
    print(f"features of both evaluators agree: {compared} values, largest relative "
          f"difference {worst:.2e}")
    print()
    rows = [
        ("ms per evaluation, ours", f"{ours_ms:.0f}", ""),
        ("ms per evaluation, BluePyOpt CellEvaluator", f"{theirs_ms:.0f}", ""),
        ("ours / BluePyOpt", f"{ratio:.3f}", f"<= {GOALS['ratio']}"),
        ("share of ours inside h.continuerun", f"{neuron_share:.1%}",
         f">= {GOALS['neuron_share']:.0%}"),
        ("share of ours inside efel.get_feature_values", f"{efel_share:.1%}", ""),
        ("share of ours elsewhere", f"{1 - neuron_share - efel_share:.1%}", ""),
        (f"IBEA {optimisation['evaluations']} evaluations on {args.workers} workers: wall (s)",
         f"{optimisation['wall']:.2f}", ""),
        ("  sum of evaluation times / workers (s)", f"{ideal:.2f}", ""),
        ("  wall / (sum / workers)", f"{parallel:.3f}", f"<= {GOALS['parallel']}"),
        ("  of the wall: no worker evaluating (s)", f"{optimisation['none_busy']:.2f}", ""),
        ("  of the wall: a worker waiting for the other (s)",
         f"{optimisation['not_all_busy']:.2f}", ""),
        ("  wall including the pool start (s)", f"{optimisation['wall_with_start']:.2f}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | {'value':>8} | goal   |")
    print(f"|{'-' * (width + 2)}|{'-' * 10}|--------|")
    for label, value, goal in rows:
        print(f"| {label.ljust(width)} | {value:>8} | {goal:<6} |")
    print()
    print("per evaluation (ms), ours:     ", " ".join(f"{1000 * t:.0f}" for t in ours["times"]))
    print("per evaluation (ms), BluePyOpt:", " ".join(f"{1000 * t:.0f}" for t in theirs["times"]))
    missed = [name for name, ok in (("ratio", ratio <= GOALS["ratio"]),
                                    ("neuron share", neuron_share >= GOALS["neuron_share"]),
                                    ("parallel", parallel <= GOALS["parallel"])) if not ok]
    if missed or worst > 1e-6 or not optimisation["completed"]:
        print(f"goals missed: {missed}; feature agreement {worst:.2e}; "
              f"optimisation completed: {optimisation['completed']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
