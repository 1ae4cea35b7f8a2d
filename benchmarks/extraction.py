"""Benchmark of the extraction: a 2-cell, 50-sweep set, through our access point and with
BluePyEfe directly, serial and on a 2-process pool.

Two sets of 2 cells × 25 sweeps:

* ``simulated``: 800 ms sweeps (dt 0.025 ms) of two hh somas of different sizes, steps from
  0.02 to 0.26 nA, in our .npz format;
* ``igor``: BluePyEfe's real IDRest recordings (3 s, 0.25 ms), the 5 sweeps of each of its
  cells B6 and B8 listed 5 times (fetched from PyPI into the data cache as the tests do).

Each timing is the best of ``--repeat`` runs after one warm-up run (imports excluded).
Printed, not asserted::

    .venv/bin/python benchmarks/extraction.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import multiprocessing
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from luigi_emodel import LocalAccessPoint
from luigi_emodel.science.extraction import extract_save_features_protocols
from luigi_emodel.science.readers import read_npz, write_npz

EMODEL = "bench"
EFEL_SETTINGS = {"interp_step": 0.025, "strict_stiminterval": True, "Threshold": -20.0}
FEATURES = ["Spikecount", "mean_frequency", "AP_amplitude", "time_to_first_spike",
            "voltage_base", "ISI_CV"]
DATA_CACHE = Path(os.environ.get("LUIGI_EMODEL_DATA_CACHE",
                                 Path.home() / ".cache" / "luigi_emodel" / "data"))


def simulate(folder: Path) -> list[dict[str, Any]]:
    """25 sweeps of each of two hh somas (20 and 24 µm), as .npz files; their file entries."""
    from neuron import h

    h.load_file("stdrun.hoc")
    h.dt = 0.025
    files = []
    for cell, diameter in (("soma20", 20.0), ("soma24", 24.0)):
        soma = h.Section(name=cell)
        soma.L = soma.diam = diameter
        soma.insert("hh")
        clamp = h.IClamp(soma(0.5))
        clamp.delay, clamp.dur = 100.0, 500.0
        voltage = h.Vector().record(soma(0.5)._ref_v)
        for number, amp in enumerate(np.linspace(0.02, 0.26, 25)):
            clamp.amp = amp
            h.finitialize(-65.0)
            h.continuerun(800.0)
            v = np.array(voltage)
            t = np.arange(v.size) * 0.025
            i = np.where((t >= 100.0) & (t < 600.0), amp, 0.0)
            path = write_npz(folder / "recordings" / cell / f"IDrest_{number}.npz", v, i, 0.025,
                             ton=100.0, toff=600.0)
            files.append({"cell_name": cell, "filepath": str(path.relative_to(folder)),
                          "ecodes": {"IDrest": {}}})
        del clamp, voltage, soma
    return files


def fetch_igor() -> Path:
    """BluePyEfe's exp_data in the cache shared with the tests (downloaded if missing)."""
    version = importlib.metadata.version("bluepyefe")
    target = DATA_CACHE / f"bluepyefe-{version}" / "exp_data"
    if (target / ".complete").is_file():
        return target
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:",
                        "--no-deps", f"bluepyefe=={version}", "-d", scratch, "--quiet"],
                       check=True)
        prefix = f"bluepyefe-{version}/tests/exp_data/"
        with tarfile.open(next(Path(scratch).glob("bluepyefe-*.tar.gz"))) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith(prefix):
                    relative = member.name[len(prefix):]
                    if relative.split("/")[0] in ("B6", "B8", "hippocampus-portal"):
                        out = target / relative
                        out.parent.mkdir(parents=True, exist_ok=True)
                        source = tar.extractfile(member)
                        assert source is not None
                        out.write_bytes(source.read())
    (target / ".complete").write_text("ok\n")
    return target


def igor_files(data: Path) -> list[dict[str, Any]]:
    files = []
    for cell in ("B6", "B8"):
        for _ in range(5):
            for current in sorted((data / cell).glob(f"{cell}_Ch0_IDRest_*.ibw")):
                voltage = current.with_name(current.name.replace("Ch0", "Ch3"))
                files.append({
                    "cell_name": cell, "filepath": str(voltage),
                    "ecodes": {"IDRest": {"ljp": 14.0}},
                    "other_metadata": {"i_file": str(current), "v_file": str(voltage),
                                       "i_unit": "pA", "v_unit": "mV", "t_unit": "s",
                                       "dt": 0.00025},
                })
    return files


def project(root: Path, files: list[dict[str, Any]], targets: list[dict[str, Any]],
            protocol: str) -> LocalAccessPoint:
    settings = {"path_extract_config": "targets.json", "plot_extraction": False,
                "efel_settings": EFEL_SETTINGS}
    recipes = {EMODEL: {"morph_path": "morphologies", "morphology": [["m", "m.swc"]],
                        "params": "params.json", "features": "features.json",
                        "pipeline_settings": settings}}
    (root / "recipes.json").write_text(json.dumps(recipes))
    (root / "targets.json").write_text(json.dumps({
        "files": files, "targets": targets, "protocols_rheobase": [protocol]}))
    return LocalAccessPoint(EMODEL, emodel_dir=root, recipes_path="recipes.json")


def direct(files: list[dict[str, Any]], targets: list[dict[str, Any]], protocol: str,
           root: Path, mapper: Callable[..., Any]) -> None:
    import bluepyefe.extract

    metadata: dict[str, Any] = {}
    for entry in files:
        meta = {**entry["ecodes"][protocol], **entry.get("other_metadata", {}),
                "filepath": str(root / entry["filepath"])}
        metadata.setdefault(entry["cell_name"], {}).setdefault(protocol, []).append(meta)
    with tempfile.TemporaryDirectory() as scratch:
        bluepyefe.extract.extract_efeatures(
            scratch, metadata, targets=[{**t, "efel_settings": {}} for t in copy.deepcopy(targets)],
            protocols_rheobase=[protocol], efel_settings=EFEL_SETTINGS, map_function=mapper,
            # BluePyEfe has no .npz reader: give it ours, unchecked.
            recording_reader=read_npz if files[0]["filepath"].endswith(".npz") else None)


def best_of(repeat: int, run: Callable[[], Any]) -> float:
    run()  # warm-up: imports, first eFEL calls
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(repeat: int, root: Path, files: list[dict[str, Any]], targets: list[dict[str, Any]],
            protocol: str, pool_map: Callable[..., Any]) -> dict[str, float]:
    """Best times of BluePyEfe directly and of our extraction, serial and on the pool."""
    ap = project(root, files, targets, protocol)
    return {
        "BluePyEfe direct, serial": best_of(
            repeat, lambda: direct(files, targets, protocol, root, map)),
        "ours, serial": best_of(repeat, lambda: extract_save_features_protocols(ap)),
        "BluePyEfe direct, pool(2)": best_of(
            repeat, lambda: direct(files, targets, protocol, root, pool_map)),
        "ours, pool(2)": best_of(repeat, lambda: extract_save_features_protocols(ap, pool_map)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # eFEL deprecations in BluePyEfe's direct runs
    import logging

    logging.disable(logging.WARNING)  # BluePyEfe logs a line per sweep

    rows = []
    with tempfile.TemporaryDirectory() as scratch, \
            multiprocessing.get_context("fork").Pool(2) as pool:
        for name in ("simulated", "igor"):
            root = Path(scratch) / name
            root.mkdir()
            if name == "simulated":
                files, protocol = simulate(root), "IDrest"
                amplitudes = [100, 150, 200, 250, 300]
            else:
                files, protocol = igor_files(fetch_igor()), "IDRest"
                amplitudes = [150, 200, 250]
            targets = [{"efeature": f, "protocol": protocol, "amplitude": a, "tolerance": 20}
                       for a in amplitudes for f in FEATURES]
            timings = measure(args.repeat, root, files, targets, protocol, pool.map)
            cells = len({f["cell_name"] for f in files})
            reference = timings["BluePyEfe direct, serial"]
            for label, seconds in timings.items():
                rows.append((name, f"{cells} cells, {len(files)} sweeps", label, seconds,
                             seconds / reference))
    print(f"{'set':10} {'size':22} {'run':28} {'seconds':>8} {'ratio':>6}")
    for name, size, label, seconds, ratio in rows:
        print(f"{name:10} {size:22} {label:28} {seconds:8.2f} {ratio:6.2f}")
    print("ratio: time / 'BluePyEfe direct, serial' of the same set; machine: "
          f"{os.cpu_count()} cores")


if __name__ == "__main__":
    main()
