"""Export of stored models as a hoc template and as a SONATA node file.

The exported hoc is run by plain NEURON in a fresh interpreter (tests/_run_exported_hoc.py,
which never imports luigi_emodel) and must fire as our evaluator does; the node file is read
back with libsonata.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import libsonata
import numpy as np
import pytest
import science_project as sp

from luigi_emodel import LocalAccessPoint
from luigi_emodel.exceptions import StorageError
from luigi_emodel.schemas.stored_model import StoredModel
from luigi_emodel.science import export
from luigi_emodel.science.evaluator import build_evaluator
from luigi_emodel.science.export import export_hoc, export_sonata

RUNNER = Path(__file__).with_name("_run_exported_hoc.py")
METADATA = {"etype": "cADpyr", "mtype": "L5_TPC:A", "brain_region": "SSCX",
            "synapse_class": "EXC"}
THRESHOLD_DATA = {"bpo_rmp": -64.97, "bpo_holding_current": -0.0125, "bpo_rin": 91.9,
                  "bpo_threshold_current": 0.0357}
#: The eFEL settings of the runner's spike detection (the same for both simulations).
EFEL_SETTINGS = {"interp_step": 0.025, "Threshold": -20.0}
STEP = "Step_200"


def make_access_point(root: Path, **settings: Any) -> LocalAccessPoint:
    sp.make_hh_project(root, **settings)
    return LocalAccessPoint(sp.EMODEL, emodel_dir=root, **METADATA)


def store(ap: LocalAccessPoint, seed: int, parameters: dict[str, float], **fields: Any) -> None:
    ap.store_emodel(StoredModel.from_result(ap.emodel_metadata, seed, parameters,
                                            {"Step_200.soma.v.Spikecount": 0.5}, **fields))


def peak_times(t: np.ndarray, v: np.ndarray, start: float, end: float) -> list[float]:
    """eFEL's peak_time from eFEL's defaults plus EFEL_SETTINGS (as the runner computes it),
    then eFEL's global settings back as they were: the evaluator of this process keeps
    track of what it set."""
    import efel

    before = dict(vars(efel.get_settings()))
    try:
        efel.reset()
        for key, value in EFEL_SETTINGS.items():
            efel.set_setting(key, value)
        trace = {"T": t, "V": v, "stim_start": [start], "stim_end": [end]}
        peaks = efel.get_feature_values([trace], ["peak_time"], raise_warnings=False)[0]
    finally:
        efel.reset()
        defaults = vars(efel.get_settings())
        for key, value in before.items():
            if defaults.get(key) != value:
                efel.set_setting(key, value)
    return [float(p) for p in peaks["peak_time"]]


def run_exported(folder: Path, stimulus: dict[str, float], v_init: float,
                 celsius: float) -> dict[str, Any]:
    """Run the exported model.hoc in a fresh interpreter; its spike times and trace size."""
    morphology = next(p.name for p in folder.iterdir() if p.suffix == ".swc")
    args = [str(folder / "model.hoc"), sp.EMODEL, str(folder), morphology,
            *(str(stimulus[k]) for k in ("delay", "amp", "duration", "totduration")),
            str(v_init), str(celsius)]
    # cwd: the export folder, so that NEURON loads no compiled mechanisms of another folder.
    done = subprocess.run([sys.executable, str(RUNNER), *args], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("morph_modifiers", [None, []], ids=["replaced_axon", "own_axon"])
def test_exported_hoc_fires_as_the_evaluator(tmp_path: Path, morph_modifiers: Any) -> None:
    ap = make_access_point(tmp_path, morph_modifiers=morph_modifiers)
    store(ap, 1, sp.TRUE_PARAMETERS)
    (folder,) = export_hoc(ap, seeds=[1])
    assert folder == ap.export_dir("hoc", 1) and ap.hoc_exists(1)
    assert sorted(p.name for p in folder.iterdir()) == ["model.hoc", "tiny_cell.swc"]
    assert (folder / "tiny_cell.swc").read_bytes() == ap.morph_path.read_bytes()
    hoc = (folder / "model.hoc").read_text()
    assert f"begintemplate {sp.EMODEL}" in hoc
    assert ("proc replace_axon()" in hoc) is (morph_modifiers is None)

    protocol = next(p for p in sp.protocols() if p["name"] == STEP)
    stimulus = protocol["stimuli"][0]
    result = build_evaluator(ap).evaluate(sp.TRUE_PARAMETERS, keep_traces=True)
    trace = result.traces[f"{STEP}.soma.v"]
    start, end = stimulus["delay"], stimulus["delay"] + stimulus["duration"]
    ours = peak_times(trace["time"], trace["voltage"], start, end)
    globals_ = {p["name"]: p["value"] for p in sp.MODEL["parameters"]
                if p["location"] == "global"}
    theirs = run_exported(folder, stimulus, globals_["v_init"], globals_["celsius"])["peak_time"]

    assert len(ours) > 5  # a real spike train, not a silent cell
    assert len(theirs) == len(ours)
    assert max(abs(a - b) for a, b in zip(ours, theirs)) < 0.5


def test_sonata_export_reads_back_with_libsonata(tmp_path: Path) -> None:
    ap = make_access_point(tmp_path)
    store(ap, 1, sp.TRUE_PARAMETERS, threshold_data=THRESHOLD_DATA)
    (folder,) = export_sonata(ap, seeds=[1])
    assert folder == ap.export_dir("sonata", 1) and ap.sonata_exists(1)
    assert sorted(p.name for p in folder.iterdir()) == ["model.hoc", "nodes.h5", "tiny_cell.swc"]

    storage = libsonata.NodeStorage(str(folder / "nodes.h5"))
    assert storage.population_names == {"SSCX_neurons"}
    population = storage.open_population("SSCX_neurons")
    assert population.size == 1
    node = libsonata.Selection([0])
    attributes = {name: population.get_attribute(name, node)[0]
                  for name in population.attribute_names}
    assert attributes == {
        "x": 0.0, "y": 0.0, "z": 0.0,
        "orientation_w": 1.0, "orientation_x": 0.0, "orientation_y": 0.0, "orientation_z": 0.0,
        "model_template": f"hoc:{sp.EMODEL}", "model_type": "biophysical",
        "morphology": "tiny_cell", "etype": "cADpyr", "mtype": "L5_TPC:A",
        "synapse_class": "EXC", "region": "SSCX",
    }
    dynamics = {name: population.get_dynamics_attribute(name, node)[0]
                for name in population.dynamics_attribute_names}
    assert dynamics == {"holding_current": THRESHOLD_DATA["bpo_holding_current"],
                        "threshold_current": THRESHOLD_DATA["bpo_threshold_current"]}
    # The datasets beside the group that the specification requires (libsonata has no
    # reader for them).
    with h5py.File(folder / "nodes.h5", "r") as handle:
        nodes = handle["nodes/SSCX_neurons"]
        for name in ("node_type_id", "node_group_id", "node_group_index"):
            assert list(nodes[name][()]) == [0]
        assert sorted(nodes) == ["0", "node_group_id", "node_group_index", "node_type_id"]


def test_sonata_export_without_threshold_data_or_region(tmp_path: Path) -> None:
    """Unknown currents are NaN (never simulated at export); no region gives 'default'."""
    sp.make_hh_project(tmp_path)
    ap = LocalAccessPoint(sp.EMODEL, emodel_dir=tmp_path)
    store(ap, 4, sp.TRUE_PARAMETERS)
    (folder,) = export_sonata(ap)
    storage = libsonata.NodeStorage(str(folder / "nodes.h5"))
    population = storage.open_population("default_neurons")
    node = libsonata.Selection([0])
    assert {"etype", "mtype", "synapse_class", "region"}.isdisjoint(population.attribute_names)
    for name in ("holding_current", "threshold_current"):
        assert math.isnan(population.get_dynamics_attribute(name, node)[0])


def test_hoc_and_sonata_exports_hold_the_same_template(tmp_path: Path) -> None:
    ap = make_access_point(tmp_path)
    store(ap, 1, sp.TRUE_PARAMETERS)
    (hoc,) = export_hoc(ap)
    (sonata,) = export_sonata(ap)

    def body(folder: Path) -> list[str]:  # without the banner's creation time
        return [line for line in (folder / "model.hoc").read_text().splitlines()
                if "Created by BluePyOpt" not in line]

    assert body(hoc) == body(sonata)
    # The stored free values and the configuration's frozen ones are in the template.
    text = (hoc / "model.hoc").read_text()
    assert "gnabar_hh = 0.12" in text and "Ra = 100" in text
    assert 'check_parameter("celsius", 6.3, celsius)' in text


def test_selection_of_models(tmp_path: Path) -> None:
    ap = make_access_point(tmp_path)
    store(ap, 1, sp.TRUE_PARAMETERS, validated=True)
    store(ap, 2, {**sp.TRUE_PARAMETERS, "gkbar_hh.somaxon": 0.05}, validated=False)
    store(ap, 3, sp.TRUE_PARAMETERS)
    assert export_hoc(ap, only_validated=True) == [ap.export_dir("hoc", 1)]
    assert not ap.hoc_exists(2) and not ap.hoc_exists(3)
    assert export_hoc(ap, seeds=[2], only_validated=True) == []
    assert sorted(export_hoc(ap)) == sorted(ap.export_dir("hoc", s) for s in (1, 2, 3))
    assert "gkbar_hh = 0.05" in (ap.export_dir("hoc", 2) / "model.hoc").read_text()


def test_export_of_a_seed_without_stored_model(tmp_path: Path) -> None:
    ap = make_access_point(tmp_path)
    store(ap, 1, sp.TRUE_PARAMETERS)
    for function in (export_hoc, export_sonata):
        with pytest.raises(StorageError, match=r"final\.json: no stored model for seed\(s\) "
                                               r"\[7\].*stored seeds: \[1\]"):
            function(ap, seeds=[1, 7])
    # Nothing was written, not even the model that exists.
    assert not (tmp_path / "export_emodels_hoc").exists()
    assert not (tmp_path / "export_emodels_sonata").exists()


def test_stored_model_missing_a_free_parameter(tmp_path: Path) -> None:
    ap = make_access_point(tmp_path)
    store(ap, 1, sp.TRUE_PARAMETERS)
    store(ap, 2, {k: v for k, v in sp.TRUE_PARAMETERS.items() if k != "gkbar_hh.somaxon"})
    key = ap.get_model_name_for_final(2)
    for function in (export_hoc, export_sonata):
        with pytest.raises(StorageError, match=rf"final\.json: {key}\.parameters: missing free "
                                               r"parameter\(s\) \['gkbar_hh\.somaxon'\]"):
            function(ap)
    assert not ap.hoc_exists(1) and not ap.sonata_exists(1)


def test_interrupted_export_leaves_no_partial_folder(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ap = make_access_point(tmp_path)
    store(ap, 1, sp.TRUE_PARAMETERS, threshold_data=THRESHOLD_DATA)

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # the process stops after model.hoc, before nodes.h5

    monkeypatch.setattr(export, "write_nodes_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_sonata(ap, seeds=[1])
    assert not ap.sonata_exists(1)
    assert list((tmp_path / "export_emodels_sonata").iterdir()) == []  # no staging left
    monkeypatch.undo()

    # A complete export, then an interrupted re-export: the first one stays whole.
    (folder,) = export_sonata(ap, seeds=[1])
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(export, "write_nodes_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_sonata(ap, seeds=[1])
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in (tmp_path / "export_emodels_sonata").iterdir()] == [folder.name]
    monkeypatch.undo()

    # A re-export replaces the folder's content.
    store(ap, 1, {**sp.TRUE_PARAMETERS, "gnabar_hh.somaxon": 0.2},
          threshold_data=THRESHOLD_DATA)
    export_sonata(ap, seeds=[1])
    assert "gnabar_hh = 0.2" in (folder / "model.hoc").read_text()
    assert [p.name for p in (tmp_path / "export_emodels_sonata").iterdir()] == [folder.name]


def test_export_killed_half_way_is_cleaned_by_the_next_one(tmp_path: Path) -> None:
    ap = make_access_point(tmp_path)
    store(ap, 1, sp.TRUE_PARAMETERS, threshold_data=THRESHOLD_DATA)
    exports = tmp_path / "export_emodels_sonata"
    # A real process exporting, stopped by SIGKILL while its staging folder is half written.
    script = (
        "import sys, time\n"
        "from luigi_emodel import LocalAccessPoint\n"
        "from luigi_emodel.science import export\n"
        "export.write_nodes_file = lambda *a, **k: (print('writing', flush=True), "
        "time.sleep(600))\n"
        f"ap = LocalAccessPoint({sp.EMODEL!r}, emodel_dir=sys.argv[1], **{METADATA!r})\n"
        "export.export_sonata(ap, seeds=[1])\n"
    )
    killed = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert killed.stdout is not None and killed.stdout.readline() == "writing\n"
    finally:
        killed.kill()
        killed.wait(timeout=30)
        if killed.stdout is not None:
            killed.stdout.close()
    (left,) = exports.iterdir()
    assert left.name.startswith(".staging-") and (left / "model.hoc").exists()
    assert not ap.sonata_exists(1)
    # A staging folder of a process still running (this one's parent) is not touched.
    alive = exports / f".staging-x@{export._HOST}@{os.getppid()}@abc"
    alive.mkdir()

    (folder,) = export_sonata(ap, seeds=[1])
    assert ap.sonata_exists(1)
    assert sorted(p.name for p in exports.iterdir()) == sorted([folder.name, alive.name])
