"""The evaluator on the hh ground-truth model: real NEURON simulations, real eFEL.

Spies (a counting wrapper around ``efel.get_feature_values`` or the evaluator's simulation
call) only count: the real function runs underneath every time.
"""

from __future__ import annotations

import copy
import pickle
import warnings
from pathlib import Path
from typing import Any

import efel
import numpy as np
import pytest

import science_project as hh
from luigi_emodel import LocalAccessPoint
from luigi_emodel.exceptions import ConfigurationError, EvaluationError
from luigi_emodel.science import evaluator as evaluator_module
from luigi_emodel.science.evaluator import EModelEvaluator, build_evaluator
from luigi_emodel.science.optimisation import run_optimisation

TRUE = hh.TRUE_PARAMETERS
# Pipeline eFEL settings of the test project, plus the features' default setting.
EFEL_SETTINGS = {"interp_step": 0.025, "strict_stiminterval": True}


@pytest.fixture(scope="module")
def truth_features(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Targets whose means are the features of the true parameters."""
    root = hh.make_hh_project(tmp_path_factory.mktemp("truth"))
    result = build_evaluator(LocalAccessPoint(hh.EMODEL, emodel_dir=root)).evaluate(TRUE)
    assert result.failed is None
    return hh.ground_truth_features(result.features)


def access_point(root: Path, features: dict[str, Any] | None = None,
                 model: dict[str, Any] | None = None, **settings: Any) -> LocalAccessPoint:
    hh.make_hh_project(root, features=features, **settings)
    if model is not None:
        hh.write_json(root / "config/params/hh.json", model)
    return LocalAccessPoint(hh.EMODEL, emodel_dir=root)


def feature(protocol: str, name: str, recording: str = "soma.v", mean: float = 1.0,
            std: float = 1.0, **settings: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"efel_feature_name": name, "protocol_name": protocol,
                             "recording_name": recording, "mean": mean, "original_std": std}
    if settings:
        entry["efel_settings"] = {"strict_stiminterval": True, **settings}
    return entry


@pytest.fixture
def efel_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every call of efel.get_feature_values: its traces, feature names and live settings."""
    calls: list[dict[str, Any]] = []
    real = efel.get_feature_values

    def spy(traces: list[dict], names: list[str], *args: Any, **kwargs: Any) -> Any:
        calls.append({"traces": len(traces), "names": sorted(names),
                      "settings": dict(vars(efel.get_settings()))})
        return real(traces, names, *args, **kwargs)

    monkeypatch.setattr(efel, "get_feature_values", spy)
    return calls


@pytest.fixture
def simulations(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The simulated duration (ms) of every NEURON run the evaluator makes."""
    runs: list[float] = []
    real = evaluator_module._Runtime.run

    def spy(self: Any, tstop: float, *args: Any, **kwargs: Any) -> Any:
        runs.append(tstop)
        return real(self, tstop, *args, **kwargs)

    monkeypatch.setattr(evaluator_module._Runtime, "run", spy)
    return runs


def test_true_parameters_score_small_and_features_equal_efel(
        tmp_path: Path, truth_features: dict[str, Any]) -> None:
    evaluator = build_evaluator(access_point(tmp_path, truth_features))
    result = evaluator.evaluate(TRUE, keep_traces=True)
    assert result.failed is None
    assert set(result.scores) == set(evaluator.objective_names)
    # Per-spike features score their spread around the mean, the others nothing.
    assert max(result.scores.values()) < 2.0, result.scores
    assert result.scores["Step_200.soma.v.Spikecount"] == 0.0
    wrong = evaluator.evaluate({**TRUE, "gnabar_hh.somaxon": 0.06})
    assert wrong.total > 10 * result.total + 10

    efel.reset()
    for name, value in EFEL_SETTINGS.items():
        efel.set_setting(name, value)
    for protocol in hh.STEPS:
        trace = result.traces[f"{protocol}.soma.v"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the name "Spikecount"
            direct = efel.get_feature_values(
                [{"T": trace["time"], "V": trace["voltage"], "stim_start": [50.0],
                  "stim_end": [350.0]}], hh.FEATURES, raise_warnings=False)[0]
        for name in hh.FEATURES:
            assert result.features[f"{protocol}.soma.v.{name}"] == \
                pytest.approx(float(np.mean(direct[name])), rel=1e-12), (protocol, name)
    # Another library resetting eFEL between two evaluations changes nothing.
    efel.reset()
    again = evaluator.evaluate(TRUE)
    assert again.features == result.features and again.scores == result.scores


def test_one_efel_call_per_recording_and_settings_group(
        tmp_path: Path, efel_calls: list[dict[str, Any]]) -> None:
    features = hh.placeholder_features()
    # Step_100 also records in the middle of the dendrite.
    features["protocols"][0]["recordings_from_config"].append(
        {"type": "CompRecording", "name": "Step_100.dend.v", "location": "dend",
         "sec_index": 0, "comp_x": 0.5, "variable": "v"})
    features["efeatures"] = (
        [feature("Step_100", name) for name in ("Spikecount", "AP_height", "voltage_base")]
        # A second settings group on the same recording.
        + [feature("Step_100", name, Threshold=-10.0) for name in ("Spikecount", "AP_width")]
        + [feature("Step_100", name, recording="dend.v")
           for name in ("Spikecount", "voltage_base")]
        + [feature("Step_200", name) for name in ("Spikecount", "mean_frequency")]
    )
    for index in (4, 5):  # the same eFEL feature twice needs distinct objective names
        features["efeatures"][index]["efeature_name"] = \
            features["efeatures"][index]["efel_feature_name"] + "_high_threshold"
    evaluator = build_evaluator(access_point(tmp_path, features))
    result = evaluator.evaluate(TRUE)
    assert result.failed is None
    assert all(value is not None for value in result.features.values()), result.features
    # Step_100: soma (2 settings groups) + dendrite (1); Step_200: soma (1); Step_300: no
    # feature, so no call.
    assert len(efel_calls) == 4
    assert all(call["traces"] == 1 for call in efel_calls)
    by_names = {tuple(call["names"]): call["settings"] for call in efel_calls}
    assert by_names[("AP_width", "Spikecount")]["Threshold"] == -10.0
    assert by_names[("AP_height", "Spikecount", "voltage_base")]["Threshold"] == -20.0
    assert all(settings["interp_step"] == 0.025 for settings in by_names.values())
    efel_calls.clear()
    evaluator.evaluate(TRUE)
    assert len(efel_calls) == 4  # the same for every evaluation


def test_fixed_step_after_cvode_in_the_same_process(tmp_path: Path,
                                                    truth_features: dict[str, Any]) -> None:
    variable = build_evaluator(access_point(tmp_path / "cvode", truth_features))
    first = variable.evaluate(TRUE, keep_traces=True)
    assert first.failed is None
    fixed = build_evaluator(access_point(tmp_path / "fixed", truth_features, neuron_dt=0.025))
    result = fixed.evaluate(TRUE, keep_traces=True)
    assert result.failed is None, result.failed
    steps = np.diff(result.traces["Step_200.soma.v"]["time"])
    assert steps == pytest.approx(0.025)  # the configured time step, everywhere
    assert np.diff(first.traces["Step_200.soma.v"]["time"]).std() > 0.025  # CVODE's vary
    for protocol in hh.STEPS:
        name = f"{protocol}.soma.v.Spikecount"
        assert result.features[name] == first.features[name]
    # And back to CVODE: the same results as the first time.
    assert variable.evaluate(TRUE).scores == first.scores


def test_timeout_scores_max_and_the_next_evaluation_works(
        tmp_path: Path, truth_features: dict[str, Any]) -> None:
    evaluator = build_evaluator(access_point(tmp_path, truth_features,
                                             optimisation_timeout=1e-3))
    result = evaluator.evaluate(TRUE)
    assert result.failed == "timeout"
    assert set(result.scores) == set(evaluator.objective_names)
    assert all(score == evaluator.max_score for score in result.scores.values())
    # The stopped simulation leaves nothing behind: with time enough, the same evaluator
    # (same cell) gives what an evaluator that never timed out gives.
    settings = evaluator.setup.settings
    evaluator.setup.settings = settings.model_copy(update={"optimisation_timeout": 60.0})
    after = evaluator.evaluate(TRUE)
    assert after.failed is None
    reference = build_evaluator(access_point(tmp_path / "ref", truth_features)).evaluate(TRUE)
    assert after.scores == reference.scores


def test_neuron_errors_score_max_and_the_optimisation_goes_on(
        tmp_path: Path, truth_features: dict[str, Any]) -> None:
    model = copy.deepcopy(hh.MODEL)
    for param in model["parameters"]:
        if param["name"] == "Ra":
            param["value"] = [-100.0, 200.0]  # NEURON refuses a negative axial resistance
        if param["name"] == "cm":
            param["value"] = [-1.0, 2.0]  # CVODE fails on a negative capacitance
    ap = access_point(tmp_path, truth_features, model=model, max_ngen=2,
                      optimisation_params={"offspring_size": 8})
    evaluator = build_evaluator(ap)
    good = {**TRUE, "Ra.all": 100.0, "cm.all": 1.0}
    before = evaluator.evaluate(good)
    assert before.failed is None
    for bad, message in (({"Ra.all": -50.0}, "Ra must be > 0"),
                         ({"cm.all": -1.0}, "integrator error")):
        result = evaluator.evaluate({**good, **bad})
        assert result.failed is not None and message in result.failed
        assert all(score == evaluator.max_score for score in result.scores.values())
    assert evaluator.evaluate(good).scores == before.scores

    # The optimisation maps the evaluations' parts: (scores of one protocol, failed).
    outcomes: list[tuple[list[float], bool]] = []

    def recording_map(func: Any, items: Any) -> list[Any]:
        results = list(map(func, items))
        outcomes.extend(results)
        return results

    outcome = run_optimisation(ap, seed=5, map_function=recording_map, evaluator=evaluator)
    assert outcome.completed and outcome.generation == 2
    assert len(outcomes) == 16 * evaluator.parts
    failed = [scores for scores, failed in outcomes if failed]
    assert 0 < len(failed) < len(outcomes)
    assert all(score == evaluator.max_score for scores in failed for score in scores)
    worst = evaluator.max_score * len(evaluator.objective_names)
    assert outcome.best_score is not None and outcome.best_score < 0.5 * worst


def test_unknown_efel_feature(tmp_path: Path) -> None:
    features = hh.placeholder_features()
    features["efeatures"].append(feature("Step_200", "spike_rate_typo"))
    evaluator = build_evaluator(access_point(tmp_path, features))
    with pytest.raises(ConfigurationError, match="spike_rate_typo"):
        evaluator.evaluate(TRUE)


@pytest.mark.parametrize("recording", [
    {"location": "basket"},
    {"location": "dend", "sec_index": 5},  # tiny_cell has one dendrite
])
def test_recording_at_an_unknown_location(tmp_path: Path, recording: dict[str, Any]) -> None:
    features = hh.placeholder_features()
    features["protocols"][1]["recordings_from_config"].append(
        {"type": "CompRecording", "name": "Step_200.elsewhere.v", "variable": "v", **recording})
    evaluator = build_evaluator(access_point(tmp_path, features))
    with pytest.raises(ConfigurationError, match="Step_200.elsewhere.v") as caught:
        evaluator.evaluate(TRUE)
    assert repr(recording["location"]) in str(caught.value)


def threshold_based_features() -> dict[str, Any]:
    protocols, efeatures = [], []
    for name, percent in (("IDrest_150", 150.0), ("IDrest_250", 250.0)):
        protocols.append({
            "name": name, "protocol_type": "ThresholdBasedProtocol",
            "stimuli": [{"delay": 100.0, "amp": 0.0, "thresh_perc": percent, "duration": 300.0,
                         "totduration": 450.0, "holding_current": 0.0}],
            "recordings_from_config": [{"type": "CompRecording", "name": f"{name}.soma.v",
                                        "location": "soma", "variable": "v"}],
        })
        efeatures += [feature(name, "Spikecount", mean=8.0, std=2.0),
                      feature(name, "AP_height", mean=25.0, std=5.0)]
    efeatures += [
        feature("RMPProtocol", "steady_state_voltage_stimend", mean=-65.0, std=1.0),
        feature("SearchHoldingCurrent", "bpo_holding_current", mean=-0.05, std=0.02),
        feature("SearchHoldingCurrent", "steady_state_voltage_stimend", mean=-70.0, std=1.0),
        feature("RinProtocol", "ohmic_input_resistance_vb_ssse", mean=150.0, std=30.0),
        feature("SearchThresholdCurrent", "bpo_threshold_current", mean=0.05, std=0.02),
    ]
    return {"protocols": protocols, "efeatures": efeatures}


def test_threshold_based_protocols(tmp_path: Path, simulations: list[float]) -> None:
    evaluator = build_evaluator(access_point(tmp_path, threshold_based_features()))
    full = evaluator.evaluate(TRUE)
    assert full.failed is None, full.failed
    data = full.threshold_data
    assert set(data) == set(evaluator_module.THRESHOLD_KEYS)
    assert data["bpo_rmp"] == pytest.approx(-65.0, abs=1.0)  # hh at rest
    assert 20.0 < data["bpo_rin"] < 2000.0
    assert 0.0 < data["bpo_threshold_current"] < 1.0
    # The holding current brings the soma to the -70 mV target (below rest: negative).
    assert data["bpo_holding_current"] < 0.0
    assert full.features["SearchHoldingCurrent.soma.v.steady_state_voltage_stimend"] == \
        pytest.approx(-70.0, abs=0.5)
    assert full.features["SearchHoldingCurrent.soma.v.bpo_holding_current"] == \
        data["bpo_holding_current"]
    assert full.features["RinProtocol.soma.v.ohmic_input_resistance_vb_ssse"] == data["bpo_rin"]
    # A stronger step above threshold fires more.
    assert full.features["IDrest_250.soma.v.Spikecount"] > \
        full.features["IDrest_150.soma.v.Spikecount"] >= 1
    assert all(score < evaluator.max_score for score in full.scores.values())
    searched = len(simulations)

    simulations.clear()
    reused = evaluator.evaluate(TRUE, threshold_data=data)
    assert reused.failed is None
    # The two protocols, and one run at the holding current for the voltage it reaches.
    assert sorted(simulations) == sorted([450.0, 450.0, evaluator_module.HOLDING_DURATION])
    assert searched > 10
    assert reused.scores == full.scores
    assert reused.threshold_data == data


def test_unsupported_stimulus_key_names_the_protocol(tmp_path: Path) -> None:
    features = hh.placeholder_features()
    features["protocols"][1]["stimuli"][0]["tmid"] = 150.0  # an eCode with a middle step
    with pytest.raises(ConfigurationError, match="protocol 'Step_200'") as caught:
        build_evaluator(access_point(tmp_path, features))
    assert "tmid" in str(caught.value)


def test_pickling_ships_only_the_setup(tmp_path: Path, truth_features: dict[str, Any]) -> None:
    evaluator = build_evaluator(access_point(tmp_path, truth_features))
    first = evaluator.evaluate(TRUE)  # the process now holds a NEURON cell for it
    payload = pickle.dumps(evaluator)
    assert evaluator.__getstate__().keys() == {"setup"}
    assert len(payload) < len(pickle.dumps(evaluator.setup)) + 200
    restored = pickle.loads(payload)
    assert isinstance(restored, EModelEvaluator)
    assert restored.param_names == evaluator.param_names
    assert restored.objective_names == evaluator.objective_names
    assert restored.evaluate(TRUE).scores == first.scores


def test_parts_give_the_scores_of_whole_evaluations(
        tmp_path: Path, truth_features: dict[str, Any]) -> None:
    model = copy.deepcopy(hh.MODEL)
    for param in model["parameters"]:
        if param["name"] == "Ra":
            param["value"] = [-100.0, 200.0]
    evaluator = build_evaluator(access_point(tmp_path, truth_features, model=model))
    assert evaluator.parts == len(hh.STEPS) == 3
    good = {**TRUE, "Ra.all": 100.0}
    for params in (good, {**good, "gnabar_hh.somaxon": 0.2, "gkbar_hh.somaxon": 0.01},
                   {**good, "Ra.all": -50.0}):  # the last fails in NEURON
        values = [params[name] for name in evaluator.param_names]
        parts = [evaluator.evaluate_part((values, index)) for index in range(evaluator.parts)]
        # Each part computes its own protocol's objectives only.
        assert [len(scores) for scores, _ in parts] == [
            sum(f.protocol_name == p.name for f in evaluator.efeatures)
            for p in evaluator.protocols]
        assert evaluator.combine_parts(parts) == evaluator.evaluate_with_lists(values)
    assert all(failed for _, failed in parts)
    assert evaluator.combine_parts(parts) == [evaluator.max_score] * len(
        evaluator.objective_names)
    with pytest.raises(EvaluationError, match="2 parts given, 3 expected"):
        evaluator.combine_parts(parts[:2])

    # A threshold-based evaluation is one part: every protocol needs the pre-protocols.
    threshold = build_evaluator(access_point(tmp_path / "threshold",
                                             threshold_based_features()))
    assert threshold.parts == 1
    values = [TRUE[name] for name in threshold.param_names]
    assert threshold.combine_parts([threshold.evaluate_part((values, 0))]) == \
        threshold.evaluate_with_lists(values)
