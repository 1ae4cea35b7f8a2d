"""Extraction: recordings + targets configuration -> fitness-calculator configuration.

Three kinds of recordings:

* real ones, from BluePyEfe's source distribution (rat cortex IDRest sweeps in Igor format,
  a hippocampus NWB file), fetched from PyPI at test time into a cache (see
  ``tests/data/recordings-README.md`` for their origin and licence); the extraction through
  our access point must give BluePyEfe's own means and stds;
* traces simulated here from a known model (a NEURON soma with ``hh``), saved in our .npz
  format: the extracted means must be eFEL's values on the same traces;
* broken ones, one test per failure the extraction must name.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import logging
import math
import multiprocessing
import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from filelock import FileLock

from conftest import EMODEL, make_project
from luigi_emodel import (
    ConfigurationError,
    ExtractionError,
    FitnessCalculatorConfiguration,
    LocalAccessPoint,
    MissingFileError,
    PipelineSettings,
)
from luigi_emodel.science.extraction import (
    extract_save_features_protocols,
    to_fitness_configuration,
)
from luigi_emodel.science.readers import RecordingReader, read_npz, write_npz

EFEL_SETTINGS = {"interp_step": 0.025, "strict_stiminterval": True, "Threshold": -20.0}

# -- real recordings: BluePyEfe's test data, fetched from PyPI -------------------------------------

BPE_VERSION = importlib.metadata.version("bluepyefe")
DATA_CACHE = Path(os.environ.get("LUIGI_EMODEL_DATA_CACHE",
                                 Path.home() / ".cache" / "luigi_emodel" / "data"))
#: Folders of the sdist's tests/exp_data that the tests use.
DATA_MEMBERS = ("B6", "B8", "hippocampus-portal")


def fetch_bluepyefe_data() -> Path:
    """``exp_data`` of BluePyEfe's sdist (same version as installed), downloaded once.

    Only the folders the tests read are extracted; the archive is not kept.
    """
    target = DATA_CACHE / f"bluepyefe-{BPE_VERSION}" / "exp_data"
    done = target / ".complete"
    DATA_CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(DATA_CACHE / f"bluepyefe-{BPE_VERSION}.lock")):
        if done.is_file():
            return target
        with tempfile.TemporaryDirectory() as scratch:
            command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:",
                       "--no-deps", f"bluepyefe=={BPE_VERSION}", "-d", scratch,
                       "--disable-pip-version-check", "--quiet"]
            try:
                subprocess.run(command, check=True, capture_output=True, timeout=300)
            except (subprocess.SubprocessError, OSError) as error:
                output = getattr(error, "stderr", b"") or b""
                pytest.skip(f"cannot download BluePyEfe {BPE_VERSION}'s source distribution "
                            f"(test recordings) from PyPI: {error} {output.decode()[-300:]}")
            archive = next(Path(scratch).glob("bluepyefe-*.tar.gz"))
            prefix = f"bluepyefe-{BPE_VERSION}/tests/exp_data/"
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    if not member.isfile() or not member.name.startswith(prefix):
                        continue
                    relative = member.name[len(prefix):]
                    if relative.split("/")[0] not in DATA_MEMBERS:
                        continue
                    destination = target / relative
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    assert source is not None
                    destination.write_bytes(source.read())
        done.write_text("ok\n")
    return target


@pytest.fixture(scope="session")
def bpe_data() -> Path:
    return fetch_bluepyefe_data()


# -- simulated recordings: a hh soma, saved in our .npz format ----------------------------------

TON, TOFF, TSTOP, DT = 100.0, 600.0, 800.0, 0.025
#: IDrest sweeps (nA): the rheobase is 0.04 nA (0.02 nA gives no spike), so these are 50 to
#: 250 % of it; IV sweeps at 0, -50 and -100 %.
IDREST_AMPS = [0.02, 0.04, 0.06, 0.08, 0.1]
IV_AMPS = [0.0, -0.02, -0.04]


def simulate_hh(amplitudes: list[float]) -> list[dict[str, np.ndarray]]:
    """Voltage (mV) and current (nA) of a 20 µm hh soma at 6.3 °C under steps of ``amplitudes``.

    NEURON's globals are set here (other tests of the session change them) and restored.
    """
    from neuron import h

    cvode = h.CVode()
    saved = {"dt": h.dt, "celsius": h.celsius, "secondorder": h.secondorder}
    saved_cvode = cvode.active()
    soma = h.Section(name="extraction_test_soma")
    try:
        soma.L = soma.diam = 20.0
        soma.insert("hh")
        clamp = h.IClamp(soma(0.5))
        clamp.delay, clamp.dur = TON, TOFF - TON
        voltage = h.Vector().record(soma(0.5)._ref_v)
        cvode.active(0)
        h.dt, h.celsius, h.secondorder = DT, 6.3, 0
        sweeps = []
        steps = int(round(TSTOP / DT))
        for amp in amplitudes:
            clamp.amp = amp
            h.finitialize(-65.0)
            for _ in range(steps):
                h.fadvance()
            v = np.array(voltage)
            assert v.size == steps + 1
            t = np.arange(v.size) * DT
            i = np.where((t >= TON) & (t < TOFF), amp, 0.0)
            sweeps.append({"voltage": v, "current": i, "amp": amp})
        return sweeps
    finally:
        del clamp, voltage
        del soma
        for key, value in saved.items():
            setattr(h, key, value)
        cvode.active(saved_cvode)


@pytest.fixture(scope="session")
def hh_sweeps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The simulated sweeps, written once as .npz files (with ton/toff)."""
    folder = tmp_path_factory.mktemp("hh_sweeps")
    out: dict[str, Any] = {"folder": folder, "IDrest": [], "IV": []}
    for ecode, amps in (("IDrest", IDREST_AMPS), ("IV", IV_AMPS)):
        for number, sweep in enumerate(simulate_hh(amps)):
            path = write_npz(folder / f"hh_{ecode}_{number}.npz", sweep["voltage"],
                             sweep["current"], DT, ton=TON, toff=TOFF)
            out[ecode].append({**sweep, "path": path})
    return out


# -- projects -------------------------------------------------------------------------------------


def open_project(root: Path, targets: dict[str, Any], **settings: Any) -> LocalAccessPoint:
    """The conftest project with these targets and settings (plots off unless asked)."""
    make_project(root)
    recipes_path = root / "recipes.json"
    recipes = json.loads(recipes_path.read_text())
    recipes[EMODEL]["pipeline_settings"].update({"plot_extraction": False, **settings})
    recipes_path.write_text(json.dumps(recipes, indent=2))
    config = {"emodel": EMODEL, "ttype": None, **targets}
    path = root / recipes[EMODEL]["pipeline_settings"]["path_extract_config"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return LocalAccessPoint(EMODEL, emodel_dir=root, recipes_path="recipes.json")


def targets_for(protocol: str, amplitudes: list[float], features: list[str],
                tolerance: float = 10.0, **extra: Any) -> list[dict[str, Any]]:
    return [{"efeature": f, "protocol": protocol, "amplitude": a, "tolerance": tolerance, **extra}
            for a in amplitudes for f in features]


def hh_files(root: Path, hh_sweeps: dict[str, Any], cells: int = 1,
             ecodes: tuple[str, ...] = ("IDrest", "IV")) -> list[dict[str, Any]]:
    """File entries for the simulated sweeps, copied under ``root/recordings`` (paths relative
    to the run root); ``cells`` copies of the same sweeps make that many cells."""
    files = []
    for cell in range(cells):
        for ecode in ecodes:
            for number, sweep in enumerate(hh_sweeps[ecode]):
                relative = f"recordings/c{cell}/{sweep['path'].name}"
                destination = root / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(sweep["path"].read_bytes())
                files.append({"cell_name": f"cell{cell}", "filename": f"{ecode}_{number}",
                              "filepath": relative, "ecodes": {ecode: {}}})
    return files


def igor_files(data: Path, link_root: Path) -> list[dict[str, Any]]:
    """File entries of the B6 and B8 IDRest sweeps (paths relative to the run root, through a
    symbolic link to the cache), as BluePyEfe's own tests describe them."""
    (link_root / "recordings").symlink_to(data, target_is_directory=True)
    files = []
    for cell in ("B6", "B8"):
        for current in sorted((data / cell).glob(f"{cell}_Ch0_IDRest_*.ibw")):
            voltage = current.name.replace("Ch0", "Ch3")
            files.append({
                "cell_name": cell, "filename": voltage[:-4],
                "filepath": f"recordings/{cell}/{voltage}",
                "ecodes": {"IDRest": {"ljp": 14.0}},
                "other_metadata": {"i_file": f"recordings/{cell}/{current.name}",
                                   "v_file": f"recordings/{cell}/{voltage}",
                                   "i_unit": "pA", "v_unit": "mV", "t_unit": "s",
                                   "dt": 0.00025},
            })
    return files


def with_target_settings(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Targets as BluePyEfe gets them: a target's efel_settings default to the reference's."""
    return [{**t, "efel_settings": {"strict_stiminterval": True}} for t in targets]


def bluepyefe_direct(files_metadata: dict[str, Any], targets: list[dict[str, Any]],
                     **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """BluePyEfe's own extraction, for comparison (its eFEL deprecation warnings silenced)."""
    import warnings

    import bluepyefe.extract

    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return bluepyefe.extract.extract_efeatures(
            output_directory=scratch, files_metadata=files_metadata,
            targets=copy.deepcopy(targets), write_files=False, plot=False, **kwargs)


def by_name(config: FitnessCalculatorConfiguration) -> dict[str, Any]:
    return {f.name: f for f in config.efeatures}


def assert_same_as_bluepyefe(config: FitnessCalculatorConfiguration,
                             efeatures: dict[str, Any], stimuli: dict[str, Any]) -> None:
    ours = by_name(config)
    expected = {}
    for protocol, locations in efeatures.items():
        for feature in locations["soma"]:
            expected[f"{protocol}.soma.v.{feature['efeature_name']}"] = feature
    assert sorted(ours) == sorted(expected)
    for name, feature in expected.items():
        mean, std = feature["val"]
        assert ours[name].mean == pytest.approx(float(mean), rel=1e-12, abs=1e-12), name
        assert ours[name].original_std == pytest.approx(float(std), rel=1e-12, abs=1e-12), name
        assert ours[name].sample_size == feature["n"]
    protocols = {p.name: p for p in config.protocols}
    assert sorted(protocols) == sorted(stimuli)
    for name, definition in stimuli.items():
        stimulus = protocols[name].stimuli[0]
        assert stimulus["amp"] == pytest.approx(float(definition["step"]["amp"]))
        assert stimulus["delay"] == pytest.approx(float(definition["step"]["delay"]))
        assert stimulus["holding_current"] == pytest.approx(float(definition["holding"]["amp"]))


# -- real recordings ------------------------------------------------------------------------------

IGOR_FEATURES = ["Spikecount", "mean_frequency", "voltage_base", "AP_amplitude", "ISI_CV"]


def test_igor_recordings_give_bluepyefe_means_and_sane_values(tmp_path: Path,
                                                               bpe_data: Path) -> None:
    files = igor_files(bpe_data, tmp_path)
    targets = targets_for("IDRest", [150, 200, 250], IGOR_FEATURES, tolerance=20)
    ap = open_project(tmp_path, {"files": files, "targets": targets,
                                 "protocols_rheobase": ["IDRest"]})
    config = extract_save_features_protocols(ap)

    # Same means and stds as BluePyEfe run directly on the same files and targets.
    metadata: dict[str, Any] = {}
    for entry in files:
        meta = {**entry["ecodes"]["IDRest"], **entry["other_metadata"]}
        for key in ("i_file", "v_file"):
            meta[key] = str(tmp_path / meta[key])
        metadata.setdefault(entry["cell_name"], {}).setdefault("IDRest", []).append(meta)
    efeatures, stimuli, currents = bluepyefe_direct(
        metadata, with_target_settings(targets), protocols_rheobase=["IDRest"],
        efel_settings=PipelineSettings().efel_settings)
    assert len(efeatures) == 3
    assert_same_as_bluepyefe(config, efeatures, stimuli)

    # Sane values: the cells fire above rheobase, and rest between -90 and -50 mV.
    features = by_name(config)
    for amp in (150, 200, 250):
        assert features[f"IDRest_{amp}.soma.v.mean_frequency"].mean > 0
        assert -90 < features[f"IDRest_{amp}.soma.v.voltage_base"].mean < -50
        assert features[f"IDRest_{amp}.soma.v.Spikecount"].sample_size == 2
    frequencies = [features[f"IDRest_{a}.soma.v.mean_frequency"].mean for a in (150, 200, 250)]
    assert frequencies == sorted(frequencies)  # f-I curve rises
    assert all(p.protocol_type == "Protocol" and not p.validation for p in config.protocols)
    # What was stored is what was returned, read back through the access point.
    assert ap.get_fitness_calculator_configuration().as_dict() == config.as_dict()


def test_nwb_recording_absolute_amplitudes_give_bluepyefe_means(tmp_path: Path,
                                                                bpe_data: Path) -> None:
    nwb = bpe_data / "hippocampus-portal" / "99111002.nwb"
    amplitudes = [0.2, 0.6, 1.0]  # nA
    targets = targets_for("Step", amplitudes, ["Spikecount", "mean_frequency", "AP_amplitude"],
                          tolerance=0.05)
    files = [{"cell_name": "99111002", "filepath": str(nwb), "ecodes": {"Step": {}}}]
    ap = open_project(tmp_path, {"files": files, "targets": targets},
                      extract_absolute_amplitudes=True)
    config = extract_save_features_protocols(ap)

    efeatures, stimuli, _ = bluepyefe_direct(
        {"99111002": {"Step": [{"filepath": str(nwb), "protocol_name": "Step"}]}},
        with_target_settings(targets), absolute_amplitude=True,
        efel_settings=PipelineSettings().efel_settings)
    assert len(efeatures) == 3
    assert_same_as_bluepyefe(config, efeatures, stimuli)
    features = by_name(config)
    for amp in ("0.2", "0.6", "1.0"):
        assert features[f"Step_{amp}.soma.v.mean_frequency"].mean > 0
    assert [p.name for p in config.protocols] == ["Step_0.2", "Step_0.6", "Step_1.0"]


# -- simulated recordings -------------------------------------------------------------------------

HH_FEATURES = ["Spikecount", "mean_frequency", "AP_amplitude", "time_to_first_spike",
               "voltage_base", "ISI_CV"]


def efel_on(sweep: dict[str, Any], features: list[str]) -> dict[str, float | None]:
    """eFEL's mean values on one simulated trace, with the extraction's settings."""
    import warnings

    import efel

    efel.reset()
    try:
        for key, value in {**EFEL_SETTINGS, "stimulus_current": sweep["amp"]}.items():
            efel.set_setting(key, value)
        trace = {"T": np.arange(sweep["voltage"].size) * DT, "V": sweep["voltage"],
                 "I": sweep["current"], "stim_start": [TON], "stim_end": [TOFF]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            values = efel.get_feature_values([trace], features, raise_warnings=False)[0]
    finally:
        efel.reset()
    return {f: None if values[f] is None or len(values[f]) == 0 else float(np.mean(values[f]))
            for f in features}


def test_simulated_traces_give_the_models_own_features(tmp_path: Path,
                                                       hh_sweeps: dict[str, Any]) -> None:
    targets = (targets_for("IDrest", [150, 200, 250], HH_FEATURES)
               + targets_for("IV", [0], ["voltage_base"])
               + targets_for("IV", [-50], ["voltage_base", "ohmic_input_resistance_vb_ssse"]))
    targets[0]["weight"] = 2.5
    ap = open_project(tmp_path, {"files": hh_files(tmp_path, hh_sweeps), "targets": targets,
                                 "protocols_rheobase": ["IDrest"]},
                      efel_settings=EFEL_SETTINGS, name_rmp_protocol="IV_0",
                      name_Rin_protocol="IV_-50", validation_protocols=["IDrest_250"],
                      threshold_efeature_std=0.05, default_std_value=0.01)
    config = extract_save_features_protocols(ap)
    features = by_name(config)

    # One sweep per amplitude: each mean is eFEL's value on that trace, the std the default.
    for amp, sweep in zip((150, 200, 250), hh_sweeps["IDrest"][2:]):
        expected = efel_on(sweep, HH_FEATURES)
        for name in HH_FEATURES:
            if expected[name] is None:  # ISI_CV of the single spike at 150 %
                assert f"IDrest_{amp}.soma.v.{name}" not in features
                continue
            feature = features[f"IDrest_{amp}.soma.v.{name}"]
            assert feature.mean == pytest.approx(expected[name], rel=1e-9), (amp, name)
            assert feature.original_std == 0.01
            assert feature.threshold_efeature_std == 0.05
            assert feature.efel_settings["Threshold"] == -20.0
    assert features["IDrest_150.soma.v.Spikecount"].weight == 2.5
    assert features["IDrest_200.soma.v.Spikecount"].weight == 1.0

    # Threshold-based: RMP and Rin features moved to the pre-protocols, currents as targets.
    rest = efel_on(hh_sweeps["IV"][0], ["voltage_base"])["voltage_base"]
    rin_sweep = efel_on(hh_sweeps["IV"][1], ["voltage_base", "ohmic_input_resistance_vb_ssse"])
    # The eFEL feature changes, the name (efeature_name) stays, as in the reference.
    rmp = features["RMPProtocol.soma.v.voltage_base"]
    assert rmp.efel_feature_name == "steady_state_voltage_stimend"
    assert rmp.mean == pytest.approx(rest)
    assert -66 < rest < -64  # hh's resting potential
    holding_voltage = features["SearchHoldingCurrent.soma.v.voltage_base"]
    assert holding_voltage.efel_feature_name == "steady_state_voltage_stimend"
    assert holding_voltage.mean == pytest.approx(rin_sweep["voltage_base"])
    rin = features["RinProtocol.soma.v.ohmic_input_resistance_vb_ssse"].mean
    assert rin == pytest.approx(rin_sweep["ohmic_input_resistance_vb_ssse"])
    assert 50 < rin < 500  # MOhm, a 20 µm soma
    assert features["SearchThresholdCurrent.soma.v.bpo_threshold_current"].mean == \
        pytest.approx(0.04)
    assert features["SearchHoldingCurrent.soma.v.bpo_holding_current"].mean == \
        pytest.approx(0.0, abs=1e-12)
    assert not any(name.startswith("IV_") for name in features)
    protocols = {p.name: p for p in config.protocols}
    assert sorted(protocols) == ["IDrest_150", "IDrest_200", "IDrest_250"]  # IV: features moved
    assert all(p.protocol_type == "ThresholdBasedProtocol" for p in protocols.values())
    assert [p.validation for p in protocols.values()] == [False, False, True]
    step = protocols["IDrest_200"].stimuli[0]
    assert step["amp"] == pytest.approx(0.08)
    assert step["thresh_perc"] == pytest.approx(200.0)
    assert step["delay"] == pytest.approx(TON) and step["duration"] == pytest.approx(TOFF - TON)
    assert step["holding_current"] == pytest.approx(0.0, abs=1e-12)


def test_npz_step_times_are_optional(tmp_path: Path, hh_sweeps: dict[str, Any]) -> None:
    """Without ton/toff in the .npz (or the metadata), BluePyEfe finds the step itself."""
    sweep = hh_sweeps["IDrest"][3]
    path = write_npz(tmp_path / "s.npz", sweep["voltage"], sweep["current"], DT)
    metadata: dict[str, Any] = {"filepath": str(path)}
    traces = read_npz(metadata)
    assert metadata == {"filepath": str(path)}
    assert traces[0]["dt"] == DT and traces[0]["v_unit"] == "mV"
    np.testing.assert_array_equal(traces[0]["voltage"], sweep["voltage"])
    # With them, the file's times go to the metadata, which win when they set their own.
    with_times = write_npz(tmp_path / "t.npz", sweep["voltage"], sweep["current"], DT,
                           ton=TON, toff=TOFF)
    metadata = {"filepath": str(with_times), "ton": 120.0}
    read_npz(metadata)
    assert metadata == {"filepath": str(with_times), "ton": 120.0, "toff": TOFF}

    files = []
    for number, sweep in enumerate(hh_sweeps["IDrest"]):
        write_npz(tmp_path / f"plain{number}.npz", sweep["voltage"], sweep["current"], DT)
        files.append({"cell_name": "c", "filepath": f"plain{number}.npz",
                      "ecodes": {"IDrest": {}}})
    ap = open_project(tmp_path, {"files": files, "protocols_rheobase": ["IDrest"],
                                 "targets": targets_for("IDrest", [200], ["mean_frequency"])},
                      efel_settings=EFEL_SETTINGS)
    config = extract_save_features_protocols(ap)
    step = config.protocols[0].stimuli[0]
    assert step["delay"] == pytest.approx(TON, abs=0.1)
    assert step["duration"] == pytest.approx(TOFF - TON, abs=0.1)
    assert step["amp"] == pytest.approx(0.08)
    expected = efel_on(hh_sweeps["IDrest"][3], ["mean_frequency"])["mean_frequency"]
    assert config.efeatures[0].mean == pytest.approx(expected, rel=1e-3)


def test_auto_target_presets(tmp_path: Path, hh_sweeps: dict[str, Any]) -> None:
    ap = open_project(tmp_path, {"files": hh_files(tmp_path, hh_sweeps, ecodes=("IDrest",)),
                                 "targets": [], "protocols_rheobase": ["IDrest"]},
                      efel_settings=EFEL_SETTINGS, auto_targets_presets=["firing_pattern"])
    config = extract_save_features_protocols(ap)
    # firing_pattern: the first two amplitudes (by priority) with recordings, 200 then 150 %.
    assert [p.name for p in config.protocols] == ["IDrest_200", "IDrest_150"]
    assert "IDrest_200.soma.v.mean_frequency" in config.objective_names


def test_process_pool_map_gives_the_same_result(tmp_path: Path,
                                                hh_sweeps: dict[str, Any]) -> None:
    targets = targets_for("IDrest", [150, 250], ["Spikecount", "mean_frequency"])
    calls = []

    def counting_map(function: Any, items: Any) -> Any:
        items = list(items)
        calls.append(len(items))
        return map(function, items)

    serial_root, pool_root = tmp_path / "serial", tmp_path / "pool"
    results = []
    for root, mapper in ((serial_root, counting_map), (pool_root, None)):
        root.mkdir()
        ap = open_project(root, {"files": hh_files(root, hh_sweeps, cells=2, ecodes=("IDrest",)),
                                 "targets": targets, "protocols_rheobase": ["IDrest"]},
                          efel_settings=EFEL_SETTINGS)
        if mapper is None:
            with multiprocessing.get_context("fork").Pool(2) as pool:
                results.append(extract_save_features_protocols(ap, pool.map))
        else:
            results.append(extract_save_features_protocols(ap, mapper))
    assert calls == [2, 2]  # per cell: reading, then feature extraction
    assert results[0].as_dict() == results[1].as_dict()


def test_user_reader(tmp_path: Path, hh_sweeps: dict[str, Any]) -> None:
    """extraction_reader = [path, function]: a user's reader of a format of theirs (here
    tab-separated text with a header line), paths relative to the run root."""
    for number, sweep in enumerate(hh_sweeps["IDrest"]):
        data = np.column_stack([np.arange(sweep["voltage"].size) * DT, sweep["voltage"],
                                sweep["current"] * 1e3])
        np.savetxt(tmp_path / f"sweep{number}.tsv", data, delimiter="\t", header="t\tv\ti")
    (tmp_path / "readers").mkdir()
    (tmp_path / "readers" / "mine.py").write_text(textwrap.dedent("""
        import numpy

        def read_tsv(metadata):
            data = numpy.loadtxt(metadata["filepath"], delimiter="\\t")
            return [{"voltage": data[:, 1], "current": data[:, 2], "dt": data[1, 0],
                     "v_unit": "mV", "i_unit": "pA", "t_unit": "ms"}]
    """))
    files = [{"cell_name": "c", "filepath": f"sweep{n}.tsv",
              "ecodes": {"IDrest": {"ton": TON, "toff": TOFF}}} for n in range(5)]
    ap = open_project(tmp_path, {"files": files, "targets": targets_for(
        "IDrest", [200], ["mean_frequency"]), "protocols_rheobase": ["IDrest"]},
        efel_settings=EFEL_SETTINGS, extraction_reader=["readers/mine.py", "read_tsv"])
    config = extract_save_features_protocols(ap)
    expected = efel_on(hh_sweeps["IDrest"][3], ["mean_frequency"])["mean_frequency"]
    # The text file keeps ~1e-18 relative precision of the voltage: same value to 1e-6.
    assert config.efeatures[0].mean == pytest.approx(expected, rel=1e-6)

    ap = open_project(tmp_path, {"files": files, "targets": targets_for(
        "IDrest", [200], ["mean_frequency"])}, extraction_reader=["readers/mine.py", "nope"])
    with pytest.raises(ConfigurationError, match=r"extraction_reader\[1\].*no function 'nope'"):
        extract_save_features_protocols(ap)


def test_plots_one_pdf_per_protocol(tmp_path: Path, hh_sweeps: dict[str, Any]) -> None:
    targets = targets_for("IDrest", [150, 250], ["mean_frequency", "AP_amplitude"])
    ap = open_project(tmp_path, {"files": hh_files(tmp_path, hh_sweeps, ecodes=("IDrest",)),
                                 "targets": targets, "protocols_rheobase": ["IDrest"]},
                      efel_settings=EFEL_SETTINGS, plot_extraction=True)
    extract_save_features_protocols(ap)
    pdfs = list(ap.figures_dir("extraction").glob("*.pdf"))
    assert [p.name for p in pdfs] == [f"{ap.emodel_metadata.as_string()}__IDrest.pdf"]
    assert pdfs[0].read_bytes().startswith(b"%PDF") and pdfs[0].stat().st_size > 5000


# -- conversion -----------------------------------------------------------------------------------


def test_conversion_settings_mapping_and_additional_items() -> None:
    def feature(name: str, mean: float, std: float) -> dict[str, Any]:
        return {"feature": name, "val": [np.float64(mean), np.float64(std)], "n": 3,
                "efel_settings": {"Threshold": np.float64(-30.0)}, "efeature_name": name}

    step = {"delay": np.float64(20.0), "amp": 0.3, "thresh_perc": 150.0, "duration": 400.0,
            "totduration": 600.0}
    efeatures = {"IDrest_150": {"soma": [feature("mean_frequency", 10.0, 30.0),
                                         feature("AP_amplitude", 80.0, 0.001)]},
                 "IDrest_15": {"soma": [feature("voltage_base", -70.0, 1.0)]}}
    stimuli = {name: {"step": dict(step), "holding": {"amp": np.float64(-0.05)}}
               for name in efeatures}
    settings = PipelineSettings(bound_max_std=True, minimum_protocol_delay=100.0,
                                validation_protocols=["Step_150"], default_std_value=0.001,
                                stochasticity=["Step_150"])
    from luigi_emodel.schemas import TargetsConfiguration

    extra_protocol = {"name": "Extra_1", "stimuli": [{**step, "holding_current": 0.0}],
                      "recordings_from_config": [{"type": "CompRecording",
                                                  "name": "Extra_1.soma.v", "location": "soma",
                                                  "variable": "v"}],
                      "protocol_type": "Protocol"}
    configuration = TargetsConfiguration.model_validate({
        "protocols_mapping": {"IDrest_150": "Step_150"},
        "additional_fitness_protocols": [extra_protocol],
        "additional_fitness_efeatures": [{"efel_feature_name": "Spikecount",
                                          "protocol_name": "Extra_1", "recording_name": "soma.v",
                                          "mean": 3, "original_std": 1}],
    })
    config = to_fitness_configuration(efeatures, stimuli, {}, settings, configuration,
                                      weights={("IDrest", 150.0, "AP_amplitude"): 3.0})
    features = by_name(config)
    assert sorted(features) == ["Extra_1.soma.v.Spikecount", "IDrest_15.soma.v.voltage_base",
                                "Step_150.soma.v.AP_amplitude", "Step_150.soma.v.mean_frequency"]
    # bound_max_std: a std above |mean| is cut to |mean|; the default std is left alone.
    assert features["Step_150.soma.v.mean_frequency"].original_std == 10.0
    assert features["Step_150.soma.v.AP_amplitude"].original_std == 0.001
    assert features["Step_150.soma.v.AP_amplitude"].weight == 3.0
    assert features["Step_150.soma.v.AP_amplitude"].efel_settings == {"Threshold": -30.0}
    protocols = {p.name: p for p in config.protocols}
    # "IDrest_15" is not renamed by the key "IDrest_150" (the reference's substring match would).
    assert sorted(protocols) == ["Extra_1", "IDrest_15", "Step_150"]
    assert protocols["Step_150"].validation and protocols["Step_150"].stochasticity
    assert not protocols["IDrest_15"].validation and not protocols["IDrest_15"].stochasticity
    # minimum_protocol_delay moves the step and lengthens the protocol.
    assert protocols["Step_150"].stimuli[0]["delay"] == 100.0
    assert protocols["Step_150"].stimuli[0]["totduration"] == 680.0
    assert protocols["Step_150"].stimuli[0]["holding_current"] == -0.05
    json.dumps(config.as_dict())  # plain JSON, no numpy left


def test_conversion_interpolates_the_rmp_under_holding() -> None:
    """interpolate_RMP_extraction: RMP = holding voltage - Rin × holding current."""
    def feature(name: str, mean: float) -> dict[str, Any]:
        return {"feature": name, "val": [mean, 1.0], "n": 2, "efel_settings": {},
                "efeature_name": name}

    efeatures = {"IV_0": {"soma": [feature("voltage_base", -80.0)]},
                 "IV_-40": {"soma": [feature("voltage_base", -81.0),
                                     feature("ohmic_input_resistance_vb_ssse", 100.0)]},
                 "IDrest_150": {"soma": [feature("voltage_base", -79.0),
                                         feature("mean_frequency", 12.0)]}}
    stimuli = {name: {"step": {"delay": 200.0, "amp": 0.1, "duration": 400.0,
                               "totduration": 800.0}, "holding": {"amp": -0.1}}
               for name in efeatures}
    currents = {"holding_current": [-0.1, 0.01], "threshold_current": [0.2, 0.02]}
    settings = PipelineSettings(name_rmp_protocol="IV_0", name_Rin_protocol="IV_-40",
                                interpolate_RMP_extraction=True)
    config = to_fitness_configuration(efeatures, stimuli, currents, settings)
    features = by_name(config)
    # The holding voltage is the median voltage_base left on IV/IDrest/IDthres protocols.
    assert features["RMPProtocol.soma.v.voltage_base"].mean == pytest.approx(-79.0 + 100 * 0.1)
    assert features["SearchHoldingCurrent.soma.v.voltage_base"].mean == -81.0
    assert features["SearchThresholdCurrent.soma.v.bpo_threshold_current"].mean == 0.2
    assert [p.name for p in config.protocols] == ["IDrest_150"]

    no_rin = {k: v for k, v in efeatures.items() if k != "IV_-40"}
    settings = PipelineSettings(name_rmp_protocol="IV_0", interpolate_RMP_extraction=True)
    with pytest.raises(ExtractionError, match="without the input resistance"):
        to_fitness_configuration(no_rin, stimuli, currents, settings)


# -- bad input: one test per case -----------------------------------------------------------------


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Log records of this package (BluePyEfe logs its own, in other words)."""
    return [r for r in caplog.records if r.name.startswith("luigi_emodel")]


def hh_project(root: Path, hh_sweeps: dict[str, Any], targets: list[dict[str, Any]] | None = None,
               files: list[dict[str, Any]] | None = None, **settings: Any) -> LocalAccessPoint:
    if files is None:
        files = hh_files(root, hh_sweeps, ecodes=("IDrest",))
    if targets is None:
        targets = targets_for("IDrest", [200], ["mean_frequency"])
    return open_project(root, {"files": files, "targets": targets,
                               "protocols_rheobase": ["IDrest"]},
                        **{"efel_settings": EFEL_SETTINGS, **settings})


def test_target_without_recording_is_reported(tmp_path: Path, hh_sweeps: dict[str, Any],
                                              caplog: pytest.LogCaptureFixture) -> None:
    targets = (targets_for("IDrest", [200], ["mean_frequency"])
               + targets_for("IDrest", [400], ["mean_frequency", "Spikecount"])
               + targets_for("IDhyperpol", [150], ["voltage_base"]))
    ap = hh_project(tmp_path, hh_sweeps, targets)
    with caplog.at_level(logging.WARNING, logger="luigi_emodel"):
        config = extract_save_features_protocols(ap)
    assert config.objective_names == ["IDrest_200.soma.v.mean_frequency"]
    warning = next(r.getMessage() for r in ours(caplog) if "matched no recording" in
                   r.getMessage())
    assert "2 target(s) matched no recording" in warning
    assert "IDrest at 400 ± 10.0 % (mean_frequency, Spikecount): recorded amplitudes: " \
           "50, 100, 150, 200, 250 %" in warning
    assert "IDhyperpol at 150 ± 10.0 %" in warning

    ap = hh_project(tmp_path / "none", hh_sweeps, targets[1:])
    with pytest.raises(ExtractionError, match="(?s)no e-feature could be extracted.*IDrest at 400"):
        extract_save_features_protocols(ap)


def test_too_few_recordings_are_reported(tmp_path: Path, hh_sweeps: dict[str, Any],
                                         caplog: pytest.LogCaptureFixture) -> None:
    # Two cells: 2 values per amplitude; time_to_second_spike exists only above 100 %.
    targets = (targets_for("IDrest", [200], ["mean_frequency", "time_to_second_spike"])
               + targets_for("IDrest", [100], ["time_to_second_spike"]))
    files = hh_files(tmp_path, hh_sweeps, cells=2, ecodes=("IDrest",))
    ap = hh_project(tmp_path, hh_sweeps, targets, files, extraction_threshold_value_save=2)
    with caplog.at_level(logging.WARNING, logger="luigi_emodel"):
        config = extract_save_features_protocols(ap)
    assert config.objective_names == ["IDrest_200.soma.v.mean_frequency",
                                      "IDrest_200.soma.v.time_to_second_spike"]
    assert config.efeatures[0].sample_size == 2
    warning = next(r.getMessage() for r in ours(caplog) if "too few values" in r.getMessage())
    assert ("IDrest_100 time_to_second_spike: 0 value(s) from 2 matching recording(s), "
            "extraction_threshold_value_save is 2") in warning

    three = tmp_path / "three"
    ap = hh_project(three, hh_sweeps, targets, hh_files(three, hh_sweeps, cells=2,
                                                        ecodes=("IDrest",)),
                    extraction_threshold_value_save=3)
    with pytest.raises(ExtractionError, match="IDrest_200 mean_frequency: 2 value"):
        extract_save_features_protocols(ap)


def test_missing_files_are_all_named(tmp_path: Path, hh_sweeps: dict[str, Any]) -> None:
    files = hh_files(tmp_path, hh_sweeps, ecodes=("IDrest",))
    files[1]["filepath"] = "recordings/gone.npz"
    files[3]["filepath"] = "elsewhere/lost.npz"
    ap = hh_project(tmp_path, hh_sweeps, files=files)
    with pytest.raises(MissingFileError) as error:
        extract_save_features_protocols(ap)
    message = str(error.value)
    assert "2 recording file(s) not found" in message
    assert "files[1].filepath: recordings/gone.npz" in message
    assert "files[3].filepath: elsewhere/lost.npz" in message
    assert not ap.get_json_path("features").read_text().count("IDrest")  # nothing stored


def test_unreadable_file_is_named(tmp_path: Path, hh_sweeps: dict[str, Any]) -> None:
    files = hh_files(tmp_path, hh_sweeps, ecodes=("IDrest",))
    (tmp_path / files[2]["filepath"]).write_bytes(b"not a numpy archive")
    ap = hh_project(tmp_path, hh_sweeps, files=files)
    with pytest.raises(ExtractionError, match=r"recordings/c0/hh_IDrest_2\.npz: cannot be read"):
        extract_save_features_protocols(ap)

    (tmp_path / "igor").mkdir()
    (tmp_path / "igor" / "bad.ibw").write_bytes(b"\x00" * 64)
    files = [{"cell_name": "c", "filepath": "bad.ibw", "ecodes": {"IDrest": {}},
              "other_metadata": {"i_file": "bad.ibw", "v_file": "bad.ibw", "t_unit": "s"}}]
    ap = hh_project(tmp_path / "igor", hh_sweeps, files=files)
    with pytest.raises(ExtractionError, match=r"bad\.ibw: cannot be read"):
        extract_save_features_protocols(ap)


def test_npz_without_current_is_named(tmp_path: Path, hh_sweeps: dict[str, Any]) -> None:
    files = hh_files(tmp_path, hh_sweeps, ecodes=("IDrest",))
    np.savez(tmp_path / files[0]["filepath"], voltage=np.zeros(10), dt=0.1)
    ap = hh_project(tmp_path, hh_sweeps, files=files)
    with pytest.raises(ExtractionError, match=r"hh_IDrest_0\.npz: missing current"):
        extract_save_features_protocols(ap)


@pytest.mark.parametrize("fault", ["nan", "lengths"])
def test_bad_trace_is_named(tmp_path: Path, hh_sweeps: dict[str, Any], fault: str) -> None:
    files = hh_files(tmp_path, hh_sweeps, ecodes=("IDrest",))
    sweep = hh_sweeps["IDrest"][4]
    voltage, current = sweep["voltage"].copy(), sweep["current"]
    if fault == "nan":
        voltage[5000] = np.nan
        expected = r"hh_IDrest_4\.npz: sweep 0: voltage has 1 NaN or infinite sample\(s\) " \
                   rf"\(first at index 5000 of {voltage.size}\)"
    else:
        current = current[:-10]
        expected = (r"hh_IDrest_4\.npz: sweep 0: voltage and current have different lengths "
                    rf"\({voltage.size} and {voltage.size - 10} samples\)")
    write_npz(tmp_path / files[4]["filepath"], voltage, current, DT, ton=TON, toff=TOFF)
    ap = hh_project(tmp_path, hh_sweeps, files=files)
    with pytest.raises(ExtractionError, match=expected):
        extract_save_features_protocols(ap)


def test_cells_without_rheobase(tmp_path: Path, hh_sweeps: dict[str, Any],
                                caplog: pytest.LogCaptureFixture) -> None:
    files = hh_files(tmp_path, hh_sweeps, cells=2, ecodes=("IDrest",))
    # cell1 keeps only its sub-threshold sweep: no rheobase can be found for it.
    files = [f for f in files if f["cell_name"] == "cell0" or f["filename"] == "IDrest_0"]
    ap = hh_project(tmp_path, hh_sweeps, files=files)
    with caplog.at_level(logging.WARNING, logger="luigi_emodel"):
        config = extract_save_features_protocols(ap)
    assert config.efeatures[0].sample_size == 1  # cell0 only
    warning = next(r.getMessage() for r in ours(caplog) if "rheobase" in r.getMessage())
    assert "rheobase not found for 1 of 2 cell(s)" in warning
    assert ("cell1: strategy 'absolute' found no rheobase among 1 sweep(s) of ['IDrest'] "
            "(0.02 nA: no spike(s))") in warning

    none = tmp_path / "none"
    only_cell1 = [f for f in hh_files(none, hh_sweeps, cells=2, ecodes=("IDrest",))
                  if f["cell_name"] == "cell1" and f["filename"] == "IDrest_0"]
    ap = hh_project(none, hh_sweeps, files=only_cell1)
    with pytest.raises(ExtractionError, match="(?s)no cell has a rheobase.*cell1: strategy"):
        extract_save_features_protocols(ap)

    iv = tmp_path / "iv"
    iv_only = [{**f, "cell_name": "ivcell"} for f in hh_files(iv, hh_sweeps, ecodes=("IV",))]
    ap = hh_project(iv, hh_sweeps, files=hh_files(iv, hh_sweeps, ecodes=("IDrest",)) + iv_only,
                    targets=targets_for("IDrest", [200], ["mean_frequency"])
                    + targets_for("IV", [-50], ["voltage_base"]))
    with pytest.raises(ConfigurationError,
                       match=r"protocols_rheobase: cell\(s\) ivcell have no recording of "
                             r"\['IDrest'\]"):
        extract_save_features_protocols(ap)


@pytest.mark.parametrize("where, unit, expected", [
    ("other_metadata", {"v_unit": "millivolt"},
     r"files\[0\]\.other_metadata\.v_unit: unknown voltage unit 'millivolt'"),
    ("ecodes", {"i_unit": "nanoamps"},
     r"files\[0\]\.ecodes\.IDrest\.i_unit: unknown current unit 'nanoamps'"),
    ("other_metadata", {"t_unit": 1000},
     r"files\[0\]\.other_metadata\.t_unit: expected a unit name"),
])
def test_units_that_do_not_parse(tmp_path: Path, hh_sweeps: dict[str, Any], where: str,
                                 unit: dict[str, Any], expected: str) -> None:
    files = hh_files(tmp_path, hh_sweeps, ecodes=("IDrest",))
    if where == "ecodes":
        files[0]["ecodes"]["IDrest"].update(unit)
    else:
        files[0]["other_metadata"] = unit
    ap = hh_project(tmp_path, hh_sweeps, files=files)
    with pytest.raises(ConfigurationError, match=expected):
        extract_save_features_protocols(ap)


def test_unit_read_from_a_file_that_does_not_parse(tmp_path: Path) -> None:
    reader_file = tmp_path / "odd.py"
    reader_file.write_text(textwrap.dedent("""
        import numpy
        def read(metadata):
            return [{"voltage": numpy.zeros(100), "current": numpy.zeros(100), "dt": 0.1,
                     "v_unit": "furlong", "i_unit": "nA", "t_unit": "ms"}]
    """))
    reader = RecordingReader(user_reader=(str(reader_file), "read"), root=tmp_path)
    with pytest.raises(ConfigurationError,
                       match=r"x\.dat: sweep 0: v_unit: unknown voltage unit 'furlong' "
                             r"\(read from the file\)"):
        reader({"filepath": str(tmp_path / "x.dat")})
    # npz recordings are in mV, nA, ms: other units in the metadata would be misapplied.
    with pytest.raises(ConfigurationError, match="v_unit is 'V'.*in mV"):
        read_npz({"filepath": str(tmp_path / "x.npz"), "v_unit": "V"})


def test_unknown_ecode_and_efeature(tmp_path: Path, hh_sweeps: dict[str, Any]) -> None:
    files = [{**f, "ecodes": {"Squiggle": {}}}
             for f in hh_files(tmp_path, hh_sweeps, ecodes=("IDrest",))]
    ap = hh_project(tmp_path, hh_sweeps, files=files,
                    targets=targets_for("Squiggle", [200], ["mean_frequency"]))
    with pytest.raises(ConfigurationError,
                       match=r"files\[0\]\.ecodes\.Squiggle: BluePyEfe knows no eCode"):
        extract_save_features_protocols(ap)
    ap = hh_project(tmp_path / "f", hh_sweeps, targets=targets_for("IDrest", [200], ["freq"]))
    with pytest.raises(ConfigurationError, match=r"targets\[0\]\.efeature: 'freq' is not an eFEL"):
        extract_save_features_protocols(ap)


def test_threshold_based_needs_rmp_and_rin_targets(tmp_path: Path,
                                                   hh_sweeps: dict[str, Any]) -> None:
    ap = hh_project(tmp_path, hh_sweeps, name_rmp_protocol="IV_0", name_Rin_protocol="IV_-50")
    with pytest.raises(ConfigurationError,
                       match=r"voltage_base on IV_0 \(pipeline_settings.name_rmp_protocol\)"):
        extract_save_features_protocols(ap)


# -- the reference, on the same project -----------------------------------------------------------

REFERENCE_SCRIPT = """
import json, sys, warnings
warnings.simplefilter("ignore")
from bluepyemodel.access_point.local import LocalAccessPoint
from bluepyemodel.efeatures_extraction.efeatures_extraction import extract_save_features_protocols
ap = LocalAccessPoint(emodel=sys.argv[1], emodel_dir=".", recipes_path="recipes.json")
extract_save_features_protocols(ap)
"""


@pytest.mark.reference
def test_reference_extracts_the_same_configuration(tmp_path: Path, bpe_data: Path) -> None:
    python = Path(os.environ.get(
        "LUIGI_EMODEL_REFERENCE_PYTHON",
        Path.home() / ".cache" / "luigi_emodel" / "ref-venv" / "bin" / "python"))
    if not python.is_file():
        pytest.skip("bluepyemodel 1.0.50 not available: run `make reference`")
    ours_root, ref_root = tmp_path / "ours", tmp_path / "ref"
    results = []
    for root in (ours_root, ref_root):
        root.mkdir()
        targets = (targets_for("IDRest", [150, 250], IGOR_FEATURES, tolerance=20)
                   + targets_for("IDRest", [250], ["ohmic_input_resistance_vb_ssse"],
                                 tolerance=20))
        targets[1]["weight"] = 2.0
        ap = open_project(root, {"files": igor_files(bpe_data, root), "targets": targets,
                                 "protocols_rheobase": ["IDRest"]},
                          name_rmp_protocol="IDRest_150", name_Rin_protocol="IDRest_250",
                          validation_protocols=["IDRest_250"], threshold_efeature_std=0.1)
        if root == ours_root:
            extract_save_features_protocols(ap)
        else:
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
            subprocess.run([str(python), "-c", REFERENCE_SCRIPT, EMODEL], cwd=root, env=env,
                           check=True, capture_output=True, timeout=300)
        results.append(json.loads(ap.get_json_path("features").read_text()))
    ours, reference = results
    assert len(ours["efeatures"]) == 13 and len(ours["protocols"]) == 2
    assert_close(ours, reference)


def assert_close(ours: Any, reference: Any, where: str = "") -> None:
    """Same JSON document, floats equal to 1e-12 relative."""
    if isinstance(reference, dict):
        assert isinstance(ours, dict) and list(ours) == list(reference), where
        for key in reference:
            assert_close(ours[key], reference[key], f"{where}.{key}")
    elif isinstance(reference, list):
        assert isinstance(ours, list) and len(ours) == len(reference), where
        for index, (a, b) in enumerate(zip(ours, reference)):
            assert_close(a, b, f"{where}[{index}]")
    elif isinstance(reference, float) and not isinstance(ours, bool):
        assert isinstance(ours, (int, float)), where
        assert math.isclose(ours, reference, rel_tol=1e-12, abs_tol=1e-15), (where, ours,
                                                                             reference)
    else:
        assert ours == reference, (where, ours, reference)
