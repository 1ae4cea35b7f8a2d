"""Simulate the example's "recordings" from known parameters.

Three cells share the model of ``config/params/example.json``: cell1 has exactly the
parameters of ``ground_truth.json`` (the answer the optimisation should find), cell2 and
cell3 have each parameter scaled by a random factor around 1 (log-normal, 6 %), as cells of
one type differ. Each cell gets the same protocols, at amplitudes relative to its own
rheobase (found by bisection, as an experimenter would):

* IDrest: 1 s steps (200 ms delay, 1.4 s sweeps) at 50 % to 300 % of rheobase, every 25 %;
* IV: 500 ms hyperpolarising steps at -20 %, -40 % and -60 % of rheobase;
* APWaveform: 50 ms steps at 275 % and 300 % of rheobase.

Sweeps are sampled every 0.1 ms with Gaussian noise (0.15 mV) and written in luigi_emodel's
``.npz`` format under ``recordings/<cell>/``; ``config/extract_config/example.json`` lists them.
The random generator is seeded: running the script again gives the same files.

The noise is why the example's targets (``config/extract_config/example.json``) measure the
sag with ``voltage_deflection_begin`` (a mean over a window) rather than ``sag_amplitude``:
a feature read at an extremum (``minimum_voltage``, ``sag_amplitude``) picks the deepest
noise sample. On cell1's -40 % step, 0.15 mV of noise reads a 1.75 mV sag as 2.11 mV
(+21 %, ten noise draws); ``voltage_deflection_begin`` moves by 0.02 %. A model, simulated
without noise, cannot match the biased value.

Usage (from anywhere)::

    python configs/example/scripts/make_recordings.py [--force]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from luigi_emodel import LocalAccessPoint
from luigi_emodel.science.evaluator import EModelEvaluator, EvaluationSetup
from luigi_emodel.science.mechanisms import compile_mechanisms
from luigi_emodel.science.readers import write_npz
from luigi_emodel.schemas import FitnessCalculatorConfiguration

ROOT = Path(__file__).resolve().parent.parent
EMODEL = "example"
SEED = 20261128
SAMPLING = 0.1  # ms
NOISE = 0.15  # mV
CELLS = ("cell1", "cell2", "cell3")
SPREAD = 0.06  # log-normal spread of the parameters between cells

IDREST = {"delay": 200.0, "duration": 1000.0, "total": 1400.0,
          "percents": [50 + 25 * i for i in range(11)]}
IV = {"delay": 200.0, "duration": 500.0, "total": 900.0, "percents": [-20, -40, -60]}
APWAVEFORM = {"delay": 50.0, "duration": 50.0, "total": 200.0, "percents": [275, 300]}
ECODES = {"IDrest": IDREST, "IV": IV, "APWaveform": APWAVEFORM}


def cell_parameters(truth: dict[str, float], rng: np.random.Generator) -> dict[str, dict]:
    cells = {CELLS[0]: dict(truth)}
    for name in CELLS[1:]:
        cells[name] = {
            key: (value * float(np.exp(rng.normal(0.0, SPREAD))) if not key.startswith("e_")
                  else value + float(rng.normal(0.0, 1.0)))
            for key, value in truth.items()
        }
    return cells


def simulator(access_point: LocalAccessPoint, mechanisms_dir: Path | None):
    """A function simulating steps [(name, delay, duration, total, amp)] for parameters."""
    model = access_point.get_model_configuration()
    settings = access_point.pipeline_settings

    def simulate(parameters: dict[str, float], steps: list[tuple]) -> dict[str, dict]:
        protocols = [
            {"name": name, "protocol_type": "Protocol",
             "stimuli": [{"delay": delay, "amp": amp, "duration": duration,
                          "totduration": total, "holding_current": 0.0}],
             "recordings_from_config": [{"type": "CompRecording", "name": f"{name}.soma.v",
                                         "location": "soma", "variable": "v"}]}
            for name, delay, duration, total, amp in steps
        ]
        features = [{"efel_feature_name": "Spikecount", "protocol_name": name,
                     "recording_name": "soma.v", "mean": 0.0, "original_std": 1.0}
                    for name, *_ in steps]
        setup = EvaluationSetup(
            emodel=EMODEL, model_configuration=model,
            fitness_configuration=FitnessCalculatorConfiguration.model_validate(
                {"protocols": protocols, "efeatures": features}),
            settings=settings, morphology_path=str(access_point.morph_path),
            mechanisms_dir=str(mechanisms_dir) if mechanisms_dir else None,
        )
        result = EModelEvaluator(setup).evaluate(parameters, keep_traces=True)
        if result.failed:
            raise RuntimeError(f"simulation failed: {result.failed}")
        return {
            name: {**result.traces[f"{name}.soma.v"],
                   "spikes": result.features[f"{name}.soma.v.Spikecount"] or 0}
            for name, *_ in steps
        }

    return simulate


def rheobase(simulate, parameters: dict[str, float]) -> float:
    """Smallest 1 s step (nA) that fires, to 1 pA."""
    low, high = 0.0, 0.05
    while simulate(parameters, [("probe", 200.0, 1000.0, 1400.0, high)])["probe"]["spikes"] == 0:
        low, high = high, high * 2
        if high > 5:
            raise RuntimeError("no spike up to 5 nA")
    while high - low > 0.001:
        mid = (low + high) / 2
        fired = simulate(parameters, [("probe", 200.0, 1000.0, 1400.0, mid)])["probe"]["spikes"]
        low, high = (low, mid) if fired else (mid, high)
    return high


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rewrite existing recordings")
    args = parser.parse_args(argv)
    targets_path = ROOT / "config" / "extract_config" / "example.json"
    targets = json.loads(targets_path.read_text())
    listed = [ROOT / f["filepath"] for f in targets["files"]]
    if listed and all(p.is_file() for p in listed) and not args.force:
        print(f"recordings present ({len(listed)} sweeps); --force to simulate them again")
        return 0
    access_point = LocalAccessPoint(EMODEL, emodel_dir=ROOT)
    simulate = simulator(access_point, compile_mechanisms(access_point))
    truth = json.loads((ROOT / "ground_truth.json").read_text())["parameters"]
    rng = np.random.default_rng(SEED)
    files = []
    for cell, parameters in cell_parameters(truth, rng).items():
        threshold = rheobase(simulate, parameters)
        steps = []
        for ecode, protocol in ECODES.items():
            for index, percent in enumerate(protocol["percents"]):
                steps.append((f"{ecode}_{index}", protocol["delay"], protocol["duration"],
                              protocol["total"], threshold * percent / 100.0))
        traces = simulate(parameters, steps)
        for name, delay, duration, total, amp in steps:
            trace = traces[name]
            time = np.arange(0.0, total, SAMPLING)
            voltage = np.interp(time, trace["time"], trace["voltage"])
            voltage += rng.normal(0.0, NOISE, size=voltage.size)
            current = np.where((time >= delay) & (time < delay + duration), amp, 0.0)
            relative = f"recordings/{cell}/{cell}_{name}.npz"
            write_npz(ROOT / relative, voltage.astype(np.float32), current.astype(np.float32),
                      SAMPLING, ton=delay, toff=delay + duration)
            ecode = name.rsplit("_", 1)[0]
            files.append({"cell_name": cell, "filename": f"{cell}_{name}", "filepath": relative,
                          "ecodes": {ecode: {}},
                          "other_metadata": {"v_unit": "mV", "i_unit": "nA", "t_unit": "ms"}})
        print(f"{cell}: rheobase {threshold:.3f} nA, {len(steps)} sweeps")
    targets["files"] = files
    targets_path.write_text(json.dumps(targets, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
