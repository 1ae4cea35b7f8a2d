"""Simulate an exported hoc template with plain NEURON, as a user of the export would.

Run in a fresh interpreter by tests/test_export.py; it imports only NEURON, eFEL and numpy
(never luigi_emodel), so that it sees nothing but the exported files.

Usage::

    python _run_exported_hoc.py <model.hoc> <template> <morphology_dir> <morphology_file> \
        <delay> <amp> <duration> <tstop> <v_init> <celsius>

Prints one JSON line: {"peak_time": [...], "n_points": N}. Spikes are eFEL's ``peak_time``
with the settings given by ``EFEL_SETTINGS`` below (the test uses the same ones).
"""

from __future__ import annotations

import json
import sys

EFEL_SETTINGS = {"interp_step": 0.025, "Threshold": -20.0}


def main(argv: list[str]) -> None:
    hoc, template, morph_dir, morph_file = argv[:4]
    delay, amp, duration, tstop, v_init, celsius = (float(a) for a in argv[4:10])

    import efel
    import numpy as np
    from neuron import h

    h.load_file("stdrun.hoc")
    h.load_file("import3d.hoc")
    h.load_file(hoc)
    cell = getattr(h, template)(morph_dir, morph_file)
    h.v_init = v_init
    h.celsius = celsius
    # The template's own check that the globals are those the model was fitted with.
    h.check_simulator()

    soma = cell.soma[0]
    clamp = h.IClamp(soma(0.5))
    clamp.delay, clamp.dur, clamp.amp = delay, duration, amp
    t_vec, v_vec = h.Vector(), h.Vector()
    t_vec.record(h._ref_t)
    v_vec.record(soma(0.5)._ref_v)
    h.cvode_active(1)
    h.tstop = tstop
    h.stdinit()
    h.continuerun(tstop)

    for key, value in EFEL_SETTINGS.items():
        efel.set_setting(key, value)
    trace = {"T": np.array(t_vec), "V": np.array(v_vec), "stim_start": [delay],
             "stim_end": [delay + duration]}
    peaks = efel.get_feature_values([trace], ["peak_time"], raise_warnings=False)[0]["peak_time"]
    print(json.dumps({"peak_time": [] if peaks is None else [float(p) for p in peaks],
                      "n_points": len(t_vec)}))


if __name__ == "__main__":
    main(sys.argv[1:])
