#!/usr/bin/env python
"""Check that the example ground-truth model of luigi_emodel behaves realistically.

Standalone: uses only NEURON, numpy and eFEL (not luigi_emodel, not BluePyOpt).

What it does
------------
1. Compiles ``configs/example/mechanisms/*.mod`` with ``nrnivmodl`` in a temporary
   directory and loads them with ``neuron.load_mechanisms``.
2. Builds the cell from ``morphologies/simple_cell.swc`` with NEURON's Import3d,
   mimicking what BluePyOpt's ``NrnFileMorphology(do_replace_axon=True)`` does:

   * nseg of every section = 1 + 2 * int(L / 40 um);
   * the axon is replaced by a 60 um stub made of two 30 um sections (nseg 1);
     the first gets the diameter of the first original axon section, the second
     the diameter of the first original axonal section whose centre is farther
     than 60 um from the soma (or the first section's diameter if there is only
     one axonal section, which is the case for simple_cell.swc: diam = 1 um).
     axon[0](0) is connected to soma(1), axon[1](0) to axon[0](1).

3. Inserts the mechanisms and sets the parameters listed in the legacy
   BluePyEModel-style ``config/params/example.json``; free parameters (those with
   ``"val": [low, high]``) take their values from ``ground_truth.json``.
   Non-uniform parameters (``"dist": "exp"``) are scaled per segment with the
   distribution's ``fun`` evaluated at the path distance from the soma centre
   (``h.distance(soma(0.5), seg)``; note that in NEURON 9 a one-argument
   ``h.distance(seg)`` *measures* from the current origin, it does not set it:
   the origin is set with ``h.distance(0, seg)``).
   Locations: all, somatic, axonal, basal, apical, alldend (= basal + apical).
4. Runs (CVODE on, IClamp at soma(0.5), no holding current):

   * a rheobase search: bisection on the amplitude of a 2 s step
     (700 ms delay, 3 s total) -- the rheobase is the lowest amplitude giving
     at least one spike (eFEL Spikecount), resolution ``--rheobase-precision``;
   * 2 s steps at 50, 100, 150, 200, 250 % of the rheobase (700 ms delay, 3 s);
   * an IV-like -0.1 nA 2 s step (700 ms delay, 3 s): RMP, input resistance, sag;
   * an APWaveform-like 50 ms step at 300 % of the rheobase (700 ms delay,
     tstop 800 ms): AP shape.

   and prints the eFEL features, checks them against the "realistic" ranges the
   example model is meant to satisfy and reports the wall-clock time of one 3 s
   step simulation.

Exit code is 0 if all checks pass, 1 otherwise.  ``--json out.json`` also writes
the measurements to a file.

Usage::

    python configs/example/scripts/check_ground_truth.py [--json out.json]
"""

import argparse
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import efel
import neuron
import numpy as np
from neuron import h

EXAMPLE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEP_DELAY = 700.0  # ms
STEP_DURATION = 2000.0  # ms
STEP_TSTOP = 3000.0  # ms
STEP_PERCENTAGES = [50, 100, 150, 200, 250]
IV_AMPLITUDE = -0.1  # nA
APWAVEFORM_PERCENTAGE = 300
APWAVEFORM_DURATION = 50.0  # ms
APWAVEFORM_TSTOP = 800.0  # ms

STEP_FEATURES = [
    "Spikecount",
    "mean_frequency",
    "time_to_first_spike",
    "adaptation_index2",
    "ISI_CV",
    "AP_amplitude",
    "peak_voltage",
    "AP_width",
    "spike_half_width",
    "AHP_depth",
    "voltage_base",
]
IV_FEATURES = [
    "voltage_base",
    "steady_state_voltage_stimend",
    "minimum_voltage",
    "voltage_deflection_vb_ssse",
    "ohmic_input_resistance_vb_ssse",
    "sag_amplitude",
    "sag_ratio1",
    "Spikecount",
]
APWAVEFORM_FEATURES = [
    "Spikecount",
    "AP_amplitude",
    "peak_voltage",
    "AP_width",
    "spike_half_width",
    "AP_rise_time",
    "AP_fall_time",
    "AHP_depth",
    "AP_begin_voltage",
]


# --------------------------------------------------------------------------- #
# Mechanisms
# --------------------------------------------------------------------------- #
def find_nrnivmodl():
    """nrnivmodl next to the running python (virtualenv) or on the PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), "nrnivmodl")
    if os.path.isfile(candidate):
        return candidate
    found = shutil.which("nrnivmodl")
    if found is None:
        raise RuntimeError("nrnivmodl not found")
    return found


def compile_and_load_mechanisms(mechanisms_dir, tmpdir):
    """Compile the .mod files into tmpdir (arch folder is created in cwd) and load them."""
    mechanisms_dir = os.path.abspath(mechanisms_dir)
    if not glob.glob(os.path.join(mechanisms_dir, "*.mod")):
        raise RuntimeError(f"no .mod files in {mechanisms_dir}")
    proc = subprocess.run(
        [find_nrnivmodl(), mechanisms_dir],
        cwd=tmpdir,
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    warnings = [line for line in proc.stdout.splitlines() if "warning" in line.lower()]
    if not neuron.load_mechanisms(tmpdir):
        raise RuntimeError(f"could not load the mechanisms compiled in {tmpdir}")
    return warnings


# --------------------------------------------------------------------------- #
# Cell
# --------------------------------------------------------------------------- #
def nseg_for(length, frequency=40.0):
    """Same rule as BluePyOpt's NrnFileMorphology.set_nseg."""
    return 1 + 2 * int(length / frequency)


class Cell:
    """The example cell built from an SWC file (Import3d, top-level sections)."""

    def __init__(self, morphology_path, replace_axon=True):
        h.load_file("stdrun.hoc")
        h.load_file("import3d.hoc")
        reader = h.Import3d_SWC_read()
        reader.quiet = 1
        reader.input(os.path.abspath(morphology_path))
        self._i3d = h.Import3d_GUI(reader, 0)
        self._i3d.instantiate(None)

        self.somatic = [s for s in h.allsec() if s.name().startswith("soma")]
        self.axonal = [s for s in h.allsec() if s.name().startswith("axon")]
        self.basal = [s for s in h.allsec() if s.name().startswith("dend")]
        self.apical = [s for s in h.allsec() if s.name().startswith("apic")]
        if len(self.somatic) != 1:
            raise RuntimeError(f"expected exactly one soma section, got {len(self.somatic)}")
        self.soma = self.somatic[0]

        for sec in h.allsec():
            sec.nseg = nseg_for(sec.L)

        if replace_axon:
            self._replace_axon()

    def _replace_axon(self, stub_length=60.0):
        """Mimic bluepyopt.ephys.morphologies.NrnFileMorphology.replace_axon."""
        if not self.axonal:
            diams = [1.0, 1.0]
        else:
            diams = [self.axonal[0].diam, self.axonal[0].diam]
            if len(self.axonal) > 1:
                for sec in self.axonal:
                    if h.distance(self.soma(0.5), sec(0.5)) > stub_length:
                        diams[1] = sec.diam
                        break
        for sec in self.axonal:
            h.delete_section(sec=sec)
        self.axonal = []
        for index in range(2):
            sec = h.Section(name=f"axon_stub{index}")
            sec.L = stub_length / 2.0
            sec.nseg = nseg_for(sec.L)
            sec.diam = diams[index]
            self.axonal.append(sec)
        self.axonal[0].connect(self.soma(1.0), 0.0)
        self.axonal[1].connect(self.axonal[0](1.0), 0.0)

    def sections(self, location):
        if location == "all":
            return self.somatic + self.axonal + self.basal + self.apical
        if location == "somatic":
            return list(self.somatic)
        if location == "axonal":
            return list(self.axonal)
        if location == "basal":
            return list(self.basal)
        if location == "apical":
            return list(self.apical)
        if location == "alldend":
            return self.basal + self.apical
        raise ValueError(f"unknown location {location}")


def resolve_value(param, location, ground_truth):
    """Frozen value, or the ground-truth value of a free ([low, high]) parameter."""
    val = param["val"]
    if isinstance(val, (list, tuple)):
        key = f"{param['name']}.{location}"
        if key not in ground_truth:
            raise KeyError(f"free parameter {key} missing from the ground truth")
        value = float(ground_truth[key])
        low, high = float(val[0]), float(val[1])
        if not low <= value <= high:
            raise ValueError(f"ground truth {key}={value} outside bounds [{low}, {high}]")
        return value
    return float(val)


def instantiate_model(cell, config, ground_truth):
    """Insert the mechanisms and set the parameters; return the applied values."""
    for location, content in config["mechanisms"].items():
        for mech in content.get("mech", []):
            for sec in cell.sections(location):
                sec.insert(mech)

    applied = {}
    distributions = config.get("distributions", {})
    for location, params in config["parameters"].items():
        if location.startswith("__"):
            continue
        for param in params:
            name = param["name"]
            value = resolve_value(param, location, ground_truth)
            applied[f"{name}.{location}"] = value
            if location == "global":
                setattr(h, name, value)
                continue
            dist = param.get("dist", "uniform")
            if dist not in ("uniform", None):
                fun = distributions[dist]["fun"]
                origin = cell.soma(0.5)
                for sec in cell.sections(location):
                    for seg in sec:
                        distance = h.distance(origin, seg)
                        scaled = eval(  # noqa: S307 - trusted config file
                            fun.format(distance=distance, value=value),
                            {"math": math, "__builtins__": {}},
                        )
                        setattr(seg, name, scaled)
            elif name == "Ra":
                for sec in cell.sections(location):
                    sec.Ra = value
            else:
                for sec in cell.sections(location):
                    for seg in sec:
                        setattr(seg, name, value)
    return applied


# --------------------------------------------------------------------------- #
# Simulation and features
# --------------------------------------------------------------------------- #
def run_step(cell, amplitude, delay, duration, tstop):
    """Current step at soma(0.5) with CVODE; returns (t, v, wall-clock seconds)."""
    stim = h.IClamp(cell.soma(0.5))
    stim.delay = delay
    stim.dur = duration
    stim.amp = amplitude
    t_vec = h.Vector().record(h._ref_t)
    v_vec = h.Vector().record(cell.soma(0.5)._ref_v)
    h.cvode_active(1)
    start = time.perf_counter()
    h.finitialize(h.v_init)
    h.continuerun(tstop)
    wall = time.perf_counter() - start
    t, v = np.array(t_vec), np.array(v_vec)
    del stim
    return t, v, wall


def efel_features(t, v, stim_start, stim_end, features, stimulus_current=None):
    trace = {"T": t, "V": v, "stim_start": [stim_start], "stim_end": [stim_end]}
    if stimulus_current is not None:
        trace["stimulus_current"] = [stimulus_current]
    result = efel.get_feature_values([trace], features, raise_warnings=False)[0]
    return {
        k: (None if val is None or len(val) == 0 else [float(x) for x in val])
        for k, val in result.items()
    }


def first(values):
    return None if values is None else values[0]


def mean(values):
    return None if values is None else float(np.mean(values))


def spikecount(cell, amplitude):
    t, v, _ = run_step(cell, amplitude, STEP_DELAY, STEP_DURATION, STEP_TSTOP)
    feats = efel_features(t, v, STEP_DELAY, STEP_DELAY + STEP_DURATION, ["Spikecount"])
    return int(first(feats["Spikecount"]) or 0)


def search_rheobase(cell, precision=0.002, max_amp=5.0):
    """Bisection on the 2 s step amplitude; lowest amplitude with >= 1 spike."""
    low, high = 0.0, 0.05
    while spikecount(cell, high) == 0:
        low, high = high, 2 * high
        if high > max_amp:
            raise RuntimeError(f"no spike up to {max_amp} nA")
    while high - low > precision:
        mid = 0.5 * (low + high)
        if spikecount(cell, mid) > 0:
            high = mid
        else:
            low = mid
    return high


def fmt(value, spec=".3f"):
    return "None" if value is None else format(value, spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mechanisms", default=os.path.join(EXAMPLE_DIR, "mechanisms"))
    parser.add_argument(
        "--morphology", default=os.path.join(EXAMPLE_DIR, "morphologies", "simple_cell.swc")
    )
    parser.add_argument(
        "--params", default=os.path.join(EXAMPLE_DIR, "config", "params", "example.json")
    )
    parser.add_argument("--ground-truth", default=os.path.join(EXAMPLE_DIR, "ground_truth.json"))
    parser.add_argument("--rheobase-precision", type=float, default=0.002, help="nA")
    parser.add_argument("--json", default=None, help="write the measurements to this file")
    args = parser.parse_args(argv)

    with open(args.params, encoding="utf-8") as f:
        config = json.load(f)
    with open(args.ground_truth, encoding="utf-8") as f:
        ground_truth = json.load(f)["parameters"]

    tmpdir = tempfile.mkdtemp(prefix="example_mechs_")
    try:
        warnings = compile_and_load_mechanisms(args.mechanisms, tmpdir)
        if warnings:
            print("nrnivmodl warnings:")
            for w in warnings:
                print("   ", w)

        cell = Cell(args.morphology)
        applied = instantiate_model(cell, config, ground_truth)

        print("Ground-truth parameters (free ones marked *):")
        for key, value in applied.items():
            mark = "*" if key in ground_truth else " "
            print(f"  {mark} {key:28s} {value:g}")
        unused = set(ground_truth) - set(applied)
        if unused:
            raise KeyError(f"ground-truth parameters not in the config: {sorted(unused)}")

        # --- rheobase -------------------------------------------------------
        start = time.perf_counter()
        rheobase = search_rheobase(cell, precision=args.rheobase_precision)
        rheo_time = time.perf_counter() - start

        # --- IV-like step -------------------------------------------------------
        t, v, _ = run_step(cell, IV_AMPLITUDE, STEP_DELAY, STEP_DURATION, STEP_TSTOP)
        iv = efel_features(
            t, v, STEP_DELAY, STEP_DELAY + STEP_DURATION, IV_FEATURES,
            stimulus_current=IV_AMPLITUDE,
        )

        # --- steps ------------------------------------------------------------
        steps = {}
        walls = []
        for pct in STEP_PERCENTAGES:
            amp = rheobase * pct / 100.0
            t, v, wall = run_step(cell, amp, STEP_DELAY, STEP_DURATION, STEP_TSTOP)
            walls.append(wall)
            feats = efel_features(t, v, STEP_DELAY, STEP_DELAY + STEP_DURATION, STEP_FEATURES)
            feats["amplitude"] = [amp]
            feats["n_time_points"] = [len(t)]
            steps[pct] = feats

        # --- APWaveform-like -------------------------------------------------
        amp = rheobase * APWAVEFORM_PERCENTAGE / 100.0
        t, v, _ = run_step(cell, amp, STEP_DELAY, APWAVEFORM_DURATION, APWAVEFORM_TSTOP)
        apw = efel_features(
            t, v, STEP_DELAY, STEP_DELAY + APWAVEFORM_DURATION, APWAVEFORM_FEATURES
        )
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    # --- report ---------------------------------------------------------------
    rmp = first(iv["voltage_base"])
    rin = first(iv["ohmic_input_resistance_vb_ssse"])
    print()
    print(f"RMP (voltage_base)            {fmt(rmp, '.2f')} mV")
    print(f"Input resistance (-0.1 nA)    {fmt(rin, '.1f')} MOhm")
    print(f"IV steady state / minimum     {fmt(first(iv['steady_state_voltage_stimend']), '.2f')}"
          f" / {fmt(first(iv['minimum_voltage']), '.2f')} mV")
    print(f"Sag amplitude / sag_ratio1    {fmt(first(iv['sag_amplitude']), '.2f')} mV"
          f" / {fmt(first(iv['sag_ratio1']), '.3f')}")
    print(f"Rheobase (2 s step)           {rheobase:.4f} nA   (search: {rheo_time:.1f} s)")
    print()
    print("Steps (2 s, 700 ms delay):")
    print(f"  {'%rheo':>5} {'amp nA':>7} {'spikes':>6} {'meanfreq':>8} {'1st spk':>8} "
          f"{'adapt2':>7} {'AP amp':>7} {'peak':>6} {'APwidth':>7} {'halfw':>6} {'AHP':>6}")
    for pct, f in steps.items():
        print(f"  {pct:>5} {f['amplitude'][0]:7.4f} {int(first(f['Spikecount']) or 0):6d} "
              f"{fmt(first(f['mean_frequency']), '8.2f')} "
              f"{fmt(first(f['time_to_first_spike']), '8.1f')} "
              f"{fmt(first(f['adaptation_index2']), '7.3f')} "
              f"{fmt(mean(f['AP_amplitude']), '7.1f')} {fmt(mean(f['peak_voltage']), '6.1f')} "
              f"{fmt(mean(f['AP_width']), '7.2f')} {fmt(mean(f['spike_half_width']), '6.2f')} "
              f"{fmt(mean(f['AHP_depth']), '6.1f')}")
    print()
    print(f"APWaveform-like (50 ms at {APWAVEFORM_PERCENTAGE}% rheobase = {amp:.4f} nA):")
    for k in APWAVEFORM_FEATURES:
        vals = apw[k]
        print(f"  {k:24s} {('None' if vals is None else ' '.join(f'{x:.3f}' for x in vals))}")
    step_wall = float(np.mean(walls))
    print()
    print(f"Wall-clock time of one 3 s step simulation (CVODE): mean {step_wall:.3f} s, "
          f"min {min(walls):.3f} s, max {max(walls):.3f} s; "
          f"{int(np.mean([s['n_time_points'][0] for s in steps.values()]))} time points")

    # --- checks ---------------------------------------------------------------
    freqs = [first(steps[p]["mean_frequency"]) for p in (150, 200, 250)]
    checks = {
        "RMP in [-70, -65] mV": rmp is not None and -70.0 <= rmp <= -65.0,
        "Rin in [50, 300] MOhm": rin is not None and 50.0 <= rin <= 300.0,
        "rheobase in [0.05, 0.5] nA": 0.05 <= rheobase <= 0.5,
        "no spike at 50% rheobase": not first(steps[50]["Spikecount"]),
        "mean_frequency 5-30 Hz at 150-250% rheobase":
            all(f is not None and 5.0 <= f <= 30.0 for f in freqs),
        "frequency increases with current": all(
            f is not None for f in freqs) and freqs[0] < freqs[1] < freqs[2],
        "adaptation (adaptation_index2 > 0) at 200% rheobase":
            (first(steps[200]["adaptation_index2"]) or 0.0) > 0.0,
        "AP peak > 10 mV": all(
            p > 10.0 for p in (apw["peak_voltage"] or [-1e9])),
        "AP half-width in [0.5, 1.5] ms": all(
            0.5 <= w <= 1.5 for w in (apw["spike_half_width"] or [-1.0])),
        "sag visible (sag_amplitude > 1 mV)": (first(iv["sag_amplitude"]) or 0.0) > 1.0,
        "no spike on the -0.1 nA step": not first(iv["Spikecount"]),
    }
    print()
    for name, ok in checks.items():
        print(f"  [{'OK' if ok else 'FAIL'}] {name}")

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "parameters": applied,
                    "rmp": rmp,
                    "input_resistance": rin,
                    "rheobase": rheobase,
                    "iv": iv,
                    "steps": {str(k): v for k, v in steps.items()},
                    "apwaveform": apw,
                    "step_wall_time_s": step_wall,
                    "checks": checks,
                },
                f,
                indent=2,
            )

    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
