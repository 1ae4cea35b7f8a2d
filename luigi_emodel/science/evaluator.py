"""The evaluator: simulate the protocols, compute the e-features, score them.

Compared with a BluePyOpt ``CellEvaluator`` built from ``eFELFeature`` objectives, which
resets eFEL and recomputes for every feature of every protocol, this evaluator

* instantiates the cell once per process and only re-applies parameter values between
  evaluations (the morphology and mechanisms do not change);
* computes **all features of one recording with one eFEL call** (one per distinct set of
  eFEL settings), and changes only the eFEL settings that differ instead of resetting;
* runs protocols in the evaluating process (no fork per protocol), so it works inside
  process pools and dask workers.

Scores follow the reference: for each feature, the mean over its values of
``|value - mean| / std``, capped at ``max_score``; a missing or NaN value scores
``max_score``. Objective names are ``<protocol>.<recording>.<feature>``.

Threshold-based protocols use the pre-protocols of the reference (RMP, holding-current
search, input resistance, threshold-current search; see ``formats.md``); their results are
returned as ``threshold_data`` so that later steps can reuse them instead of re-simulating.

Simulations use CVODE unless ``neuron_dt`` is set; the time step is always passed
explicitly. Each evaluation has a wall-clock limit (``optimisation_timeout``); a timed-out or
crashing simulation scores ``max_score`` on every objective rather than stopping the run.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from luigi_emodel.exceptions import ConfigurationError, EvaluationError
from luigi_emodel.schemas.fitness_configuration import (
    PRE_PROTOCOLS,
    EFeatureConfig,
    FitnessCalculatorConfiguration,
    ProtocolConfig,
)
from luigi_emodel.schemas.model_configuration import ModelConfiguration
from luigi_emodel.schemas.pipeline_settings import PipelineSettings

__all__ = [
    "EModelEvaluator",
    "build_evaluator",
    "EvaluationResult",
    "EvaluationSetup",
    "THRESHOLD_KEYS",
]

logger = logging.getLogger(__name__)

#: Keys of ``threshold_data`` (as the reference's protocol output keys).
THRESHOLD_KEYS = ("bpo_rmp", "bpo_holding_current", "bpo_rin", "bpo_threshold_current")

# Pre-protocol timings (ms) and amplitudes (nA), the reference's defaults.
RMP_DURATION = 500.0
HOLDING_DURATION = 500.0
RIN_DELAY, RIN_DURATION, RIN_TOTAL, RIN_AMP = 500.0, 500.0, 1000.0, -0.02
THRESHOLD_DELAY, THRESHOLD_DURATION, THRESHOLD_TOTAL = 500.0, 2000.0, 3000.0
HOLDING_VOLTAGE_PRECISION = 0.1  # mV
# Pre-protocol features whose value is an entry of threshold_data.
_FROM_THRESHOLD_DATA = {
    ("RMPProtocol", "steady_state_voltage_stimend"): "bpo_rmp",
    ("SearchHoldingCurrent", "bpo_holding_current"): "bpo_holding_current",
    ("RinProtocol", "ohmic_input_resistance_vb_ssse"): "bpo_rin",
    ("SearchThresholdCurrent", "bpo_threshold_current"): "bpo_threshold_current",
}
# Keys a step stimulus may carry; anything else describes an eCode we do not simulate.
_STEP_KEYS = {"delay", "amp", "duration", "totduration", "holding_current", "thresh_perc"}


class SimulationTimeout(Exception):
    """A simulation ran past the evaluation's wall-clock limit."""


@dataclass
class EvaluationSetup:
    """Everything an evaluation needs, as plain picklable data (shipped to workers)."""

    emodel: str
    model_configuration: ModelConfiguration
    fitness_configuration: FitnessCalculatorConfiguration
    settings: PipelineSettings
    morphology_path: str
    mechanisms_dir: str | None = None
    multiloc_map: dict[str, list[str]] | None = None
    include_validation: bool = False


@dataclass
class EvaluationResult:
    """Scores, feature values and threshold data of one parameter set."""

    scores: dict[str, float]
    features: dict[str, float | None]
    threshold_data: dict[str, float | None] = field(default_factory=dict)
    traces: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    failed: str | None = None

    @property
    def total(self) -> float:
        """Sum of the scores (final.json's ``score``)."""
        return float(sum(self.scores.values()))


class _Runtime:
    """The NEURON side of an evaluator, built once per process."""

    def __init__(self, setup: EvaluationSetup) -> None:
        from bluepyopt import ephys

        from luigi_emodel.science.cell_model import build_cell_model
        from luigi_emodel.science.mechanisms import load_mechanisms

        # Held so that id(setup), the key of _RUNTIMES, cannot be reused by another setup.
        self.setup = setup
        load_mechanisms(Path(setup.mechanisms_dir) if setup.mechanisms_dir else None)
        dt = setup.settings.neuron_dt
        self.cvode = dt is None
        self.dt = dt if dt is not None else 0.025
        self.sim = ephys.simulators.NrnSimulator(dt=self.dt, cvode_active=self.cvode)
        self.h = self.sim.neuron.h
        self.h.load_file("stdrun.hoc")
        self.cell = build_cell_model(
            setup.model_configuration, setup.emodel, setup.morphology_path,
            morph_modifiers=setup.settings.morph_modifiers, multiloc_map=setup.multiloc_map,
        )
        free = {p.full_name: (p.value[0] + p.value[1]) / 2  # type: ignore[index]
                for p in setup.model_configuration.free_parameters}
        self.cell.freeze(free)
        try:
            self.cell.instantiate(sim=self.sim)
        except Exception as error:
            raise EvaluationError(f"{setup.emodel}: the cell cannot be built: {error}") from error
        finally:
            self.cell.unfreeze(list(free))
        self.icell = self.cell.icell
        self.soma = self.icell.soma[0]
        if self.cvode and setup.settings.cvode_minstep:
            self.h.cvode.minstep(setup.settings.cvode_minstep)
        self._deadline = math.inf
        self._steps = 0
        self._timed_out = False
        # Called after every integration step: cheap, and does not disturb CVODE the way
        # periodic events would.
        self._step_callback = self._check_deadline
        self.h.cvode.extra_scatter_gather(0, self._step_callback)

    def close(self) -> None:
        """Take this cell out of NEURON, so that the next cell is simulated alone."""
        # The step callback holds this runtime, which holds the cell's sections: unless both
        # go, the old sections stay in every later simulation and change CVODE's steps.
        self.h.cvode.extra_scatter_gather_remove(self._step_callback)
        self.cell.destroy(sim=self.sim)
        self.icell = self.soma = None

    def _check_deadline(self) -> None:
        self._steps += 1
        if self._steps % 200 == 0 and time.monotonic() > self._deadline:
            self._timed_out = True
            self.h.stoprun = 1

    def set_parameters(self, values: dict[str, float]) -> None:
        self.cell.freeze(values)
        try:
            for param in self.cell.params.values():
                param.instantiate(sim=self.sim, icell=self.icell, params=self.cell.params)
        finally:
            self.cell.unfreeze(list(values))

    def segment(self, recording: Any) -> Any:
        location = recording.location
        if location == "soma" and recording.sec_name is None:
            return self.soma(0.5)
        sec_name = recording.sec_name or location
        try:
            sections = getattr(self.icell, sec_name)
            section = sections[recording.sec_index or 0]
        except (AttributeError, IndexError, LookupError, RuntimeError):
            raise ConfigurationError(
                f"recording {recording.name!r}: location {location!r} is not a section of the "
                f"cell (expected 'soma' or a section array such as 'axon', 'dend', 'apic' with "
                f"sec_index)"
            ) from None
        return section(recording.comp_x if recording.comp_x is not None else 0.5)

    def _clamp(self, delay: float, duration: float, amp: float) -> Any:
        clamp = self.h.IClamp(self.soma(0.5))
        clamp.delay, clamp.dur, clamp.amp = delay, duration, amp
        return clamp

    def _recorder(self, reference: Any) -> Any:
        vector = self.h.Vector()
        vector.record(reference)
        return vector

    def run(self, tstop: float, steps: list[tuple[float, float, float]],
            segments: list[Any], deadline: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Simulate ``tstop`` ms with current steps (delay, duration, amp) at the soma."""
        h = self.h
        clamps = [self._clamp(*step) for step in steps]
        recorders = [self._recorder(h._ref_t)] + [self._recorder(seg._ref_v) for seg in segments]
        h.cvode_active(1 if self.cvode else 0)
        h.dt = self.dt
        if not self.cvode:
            h.steps_per_ms = 1.0 / self.dt
        h.tstop = tstop
        self._deadline, self._steps, self._timed_out = deadline, 0, False
        try:
            h.stdinit()
            h.continuerun(tstop)
            arrays = [np.array(vector) for vector in recorders]
        finally:
            self._deadline = math.inf
            # A failed run's traceback keeps this frame alive for as long as anything holds
            # the exception (a logging handler that stores records is enough): drop the
            # clamps and recorders here, or they would inject current into, and record from,
            # every later simulation.
            clamps.clear()
            recorders.clear()
        if self._timed_out:
            raise SimulationTimeout()
        return [(arrays[0], v) for v in arrays[1:]]


_RUNTIMES: dict[int, _Runtime] = {}


class _EFeatureCalculator:
    """Runs eFEL with minimal settings changes between calls."""

    def __init__(self) -> None:
        import efel

        self.efel = efel
        self.defaults = {k: v for k, v in vars(efel.Settings()).items()}

    def _apply(self, settings: dict[str, Any]) -> None:
        # Compared with eFEL's live settings, not with what this object set last: other code
        # in the process (BluePyOpt's eFELFeature, BluePyEfe) resets or changes them.
        current = vars(self.efel.get_settings())
        for key, value in {**self.defaults, **settings}.items():
            if key in current and current[key] == value:
                continue
            try:
                self.efel.set_setting(key, value)
            except (TypeError, ValueError, AttributeError) as error:
                raise ConfigurationError(
                    f"efel_settings: {key}={value!r} is not an eFEL setting: {error}"
                ) from None

    def compute(self, trace: dict[str, Any], names: list[str],
                settings: dict[str, Any]) -> dict[str, Any]:
        self._apply(settings)
        try:
            with warnings.catch_warnings():
                # eFEL warns when averaging the empty arrays of a trace without spikes, and
                # deprecates reference feature names (Spikecount) that projects still use.
                warnings.simplefilter("ignore")
                return self.efel.get_feature_values([trace], names, raise_warnings=False)[0]
        except Exception as error:  # eFEL raises plain exceptions for unknown features etc.
            known = set(self.efel.get_feature_names())
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ConfigurationError(
                    f"efeatures: {unknown} are not eFEL features"
                ) from None
            logger.debug("eFEL failed on %s: %s", names, error)
            return {name: None for name in names}


_CALCULATOR: _EFeatureCalculator | None = None


def _calculator() -> _EFeatureCalculator:
    global _CALCULATOR
    if _CALCULATOR is None:
        _CALCULATOR = _EFeatureCalculator()
    return _CALCULATOR


def _score(feature: EFeatureConfig, values: Any, max_score: float) -> float:
    if values is None:
        return max_score
    values = np.atleast_1d(np.asarray(values, dtype=float))
    if values.size == 0 or np.all(np.isnan(values)):
        return max_score
    score = float(np.sum(np.abs(values - feature.mean)) / feature.std / values.size)
    if math.isnan(score):
        return max_score
    return min(score, max_score)


def _mean_value(values: Any) -> float | None:
    if values is None:
        return None
    values = np.atleast_1d(np.asarray(values, dtype=float))
    if values.size == 0 or np.all(np.isnan(values)):
        return None
    return float(np.nanmean(values))


class EModelEvaluator:
    """A BluePyOpt-compatible evaluator of one e-model.

    Args:
        setup: model, features, settings and file paths (see :class:`EvaluationSetup`).

    The optimisers use ``params``, ``objectives``, ``param_names`` and
    ``init_simulator_and_evaluate_with_lists``; :meth:`evaluate` gives the full result.
    """

    def __init__(self, setup: EvaluationSetup) -> None:
        from bluepyopt.objectives import Objective
        from bluepyopt.parameters import Parameter

        self.setup = setup
        settings = setup.settings
        self.max_score = settings.max_score
        self.protocols = [
            p for p in setup.fitness_configuration.protocols
            if setup.include_validation or not p.validation
        ]
        names = {p.name for p in self.protocols}
        self.efeatures = [
            f for f in setup.fitness_configuration.efeatures
            if f.protocol_name in names or f.protocol_name in PRE_PROTOCOLS
        ]
        for protocol in self.protocols:
            extra = set().union(*(s.keys() for s in protocol.stimuli)) - _STEP_KEYS
            if extra:
                raise ConfigurationError(
                    f"protocol {protocol.name!r}: stimulus keys {sorted(extra)} describe an "
                    f"eCode that is not supported: step protocols only (keys "
                    f"{sorted(_STEP_KEYS)})"
                )
        self.threshold_based = any(
            p.protocol_type == "ThresholdBasedProtocol" for p in self.protocols
        ) or any(f.protocol_name in PRE_PROTOCOLS for f in self.efeatures)
        self.params = [
            Parameter(p.full_name, bounds=list(p.value))  # type: ignore[arg-type]
            for p in setup.model_configuration.free_parameters
        ]
        self.param_names = [p.name for p in self.params]
        self.objectives = [Objective(f.name) for f in self.efeatures]
        self.objective_names = [f.name for f in self.efeatures]
        # Base eFEL settings of the pipeline, overridden per feature.
        self.efel_settings = dict(settings.efel_settings)

    # -- pickling: only the setup travels ----------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {"setup": self.setup}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["setup"])  # type: ignore[misc]

    # -- BluePyOpt's evaluator interface ---------------------------------------------------------

    def init_simulator_and_evaluate_with_lists(self, param_list: list[float],
                                               target: str = "scores") -> list[float]:
        """Scores in objective order (what the optimisers call)."""
        return self.evaluate_with_lists(param_list)

    def evaluate_with_lists(self, param_list: list[float]) -> list[float]:
        result = self.evaluate(dict(zip(self.param_names, param_list)))
        return [result.scores[name] for name in self.objective_names]

    def evaluate_with_dicts(self, param_dict: dict[str, float]) -> dict[str, float]:
        return self.evaluate(param_dict).scores

    # -- evaluations in parts, one protocol each -------------------------------------------------

    @property
    def parts(self) -> int:
        """Independent parts of an evaluation: one per protocol, or a single one when the
        evaluation is threshold-based (every protocol then needs the pre-protocols' results).
        """
        return 1 if self.threshold_based or not self.protocols else len(self.protocols)

    def evaluate_part(self, item: tuple[list[float], int]) -> tuple[list[float], bool]:
        """Part ``item[1]`` of the evaluation of ``item[0]`` (values in ``param_names`` order):
        the scores of that protocol's objectives, in objective order, and whether it failed.

        :meth:`combine_parts` puts the parts of one evaluation together. Each protocol starts
        from the resting state with the same parameters, so the parts' scores are those of the
        whole evaluation; the evaluation time limit applies to each part.
        """
        param_list, index = item
        if not 0 <= index < self.parts:
            raise EvaluationError(f"part {index} of an evaluation in {self.parts} part(s)")
        protocols = self.protocols if self.parts == 1 else [self.protocols[index]]
        result = self._evaluate(dict(zip(self.param_names, param_list)), None, False, protocols)
        names = self._part_objectives(index)
        return [result.scores[name] for name in names], result.failed is not None

    def _part_objectives(self, index: int) -> list[str]:
        if self.parts == 1:
            return list(self.objective_names)
        protocol = self.protocols[index].name
        return [f.name for f in self.efeatures if f.protocol_name == protocol]

    def combine_parts(self, parts: list[tuple[list[float], bool]]) -> list[float]:
        """Scores in objective order from the :meth:`evaluate_part` results of one evaluation
        (parts 0 to ``parts - 1``). A failed part fails the evaluation: every objective gets
        ``max_score``, as when :meth:`evaluate` fails."""
        if len(parts) != self.parts:
            raise EvaluationError(f"{len(parts)} parts given, {self.parts} expected")
        if any(failed for _, failed in parts):
            return [self.max_score] * len(self.objective_names)
        scores: dict[str, float] = {}
        for index, (values, _) in enumerate(parts):
            scores.update(zip(self._part_objectives(index), values))
        return [scores[name] for name in self.objective_names]

    # -- evaluation ------------------------------------------------------------------------------

    def _runtime(self) -> _Runtime:
        key = id(self.setup)
        runtime = _RUNTIMES.get(key)
        if runtime is None:
            # One cell per process: drop runtimes of other setups (e.g. a previous test).
            for old in _RUNTIMES.values():
                old.close()
            _RUNTIMES.clear()
            runtime = _Runtime(self.setup)
            _RUNTIMES[key] = runtime
        return runtime

    def evaluate(self, param_dict: dict[str, float],
                 threshold_data: dict[str, float | None] | None = None,
                 keep_traces: bool = False) -> EvaluationResult:
        """Simulate every protocol with these parameters and score every feature.

        Args:
            param_dict: values of the free parameters by name.
            threshold_data: results of earlier pre-protocols (skip them when given).
            keep_traces: keep the voltage traces in the result (for figures and checks).
        """
        return self._evaluate(param_dict, threshold_data, keep_traces, self.protocols)

    def _evaluate(self, param_dict: dict[str, float],
                  threshold_data: dict[str, float | None] | None, keep_traces: bool,
                  protocols: list[ProtocolConfig]) -> EvaluationResult:
        """:meth:`evaluate`, simulating only ``protocols`` (the pre-protocols as needed);
        the features of the other protocols score ``max_score``."""
        missing = set(self.param_names) - set(param_dict)
        if missing:
            raise EvaluationError(f"parameters missing from the evaluation: {sorted(missing)}")
        runtime = self._runtime()
        deadline = time.monotonic() + self.setup.settings.optimisation_timeout
        features: dict[str, Any] = {}
        traces: dict[str, dict[str, np.ndarray]] = {}
        data: dict[str, float | None] = dict(threshold_data or {})
        try:
            runtime.set_parameters({k: param_dict[k] for k in self.param_names})
            if self.threshold_based and not threshold_data:
                data = self._pre_protocols(runtime, deadline, features, traces, keep_traces)
            elif self.threshold_based:
                self._reuse_threshold_data(runtime, data, deadline, features, traces,
                                           keep_traces)
            for protocol in protocols:
                self._run_protocol(runtime, protocol, data, deadline, features, traces,
                                   keep_traces)
        except SimulationTimeout:
            return self._failed("timeout", data)
        except ConfigurationError:
            raise
        except _PreProtocolFailed as failure:
            return self._failed(str(failure), data, features)
        except Exception as error:  # NEURON's hoc errors come as RuntimeError and friends
            logger.warning("evaluation failed: %s: %s", type(error).__name__, error)
            return self._failed(f"{type(error).__name__}: {error}", data)
        scores = {f.name: _score(f, features.get(f.name), self.max_score)
                  for f in self.efeatures}
        return EvaluationResult(
            scores=scores,
            features={f.name: _mean_value(features.get(f.name)) for f in self.efeatures},
            threshold_data=data,
            traces=traces,
        )

    def _failed(self, reason: str, data: dict[str, float | None],
                features: dict[str, Any] | None = None) -> EvaluationResult:
        features = features or {}
        return EvaluationResult(
            scores={f.name: (_score(f, features[f.name], self.max_score)
                             if f.name in features else self.max_score)
                    for f in self.efeatures},
            features={f.name: _mean_value(features.get(f.name)) for f in self.efeatures},
            threshold_data=data,
            failed=reason,
        )

    # -- protocols ----------------------------------------------------------------------------

    def _features_of(self, protocol_name: str, recording_name: str) -> list[EFeatureConfig]:
        return [f for f in self.efeatures
                if f.protocol_name == protocol_name and f.recording_name == recording_name]

    def _compute(self, protocol_name: str, recording_name: str, t: np.ndarray, v: np.ndarray,
                 stim_start: float, stim_end: float, stim_current: float,
                 features: dict[str, Any], extra: list[tuple[str, dict[str, Any]]] = ()) -> dict:
        """All features of one recording: one eFEL call per distinct settings group."""
        groups: dict[tuple, tuple[dict[str, Any], list[tuple[str, str]]]] = {}
        wanted = [(f.name, f.efel_feature_name, f.efel_settings)
                  for f in self._features_of(protocol_name, recording_name)
                  if not f.efel_feature_name.startswith("bpo_")]
        wanted += [(f"_{name}", name, settings) for name, settings in extra]
        for objective, efel_name, own in wanted:
            settings = {**self.efel_settings, **own}
            key = tuple(sorted((k, repr(v)) for k, v in settings.items()))
            groups.setdefault(key, (settings, []))[1].append((objective, efel_name))
        trace = {"T": t, "V": v, "stim_start": [stim_start], "stim_end": [stim_end],
                 "stimulus_current": [stim_current]}
        out: dict[str, Any] = {}
        for settings, pairs in groups.values():
            names = sorted({efel_name for _, efel_name in pairs})
            values = _calculator().compute(trace, names, settings)
            for objective, efel_name in pairs:
                out[objective] = values.get(efel_name)
                if not objective.startswith("_"):
                    features[objective] = values.get(efel_name)
        return out

    def _run_protocol(self, runtime: _Runtime, protocol: ProtocolConfig,
                      data: dict[str, float | None], deadline: float,
                      features: dict[str, Any], traces: dict[str, Any],
                      keep_traces: bool) -> None:
        stimulus = protocol.stimuli[0]
        delay, duration = float(stimulus["delay"]), float(stimulus["duration"])
        total = float(stimulus["totduration"])
        if protocol.protocol_type == "ThresholdBasedProtocol":
            threshold, holding = data.get("bpo_threshold_current"), data.get(
                "bpo_holding_current")
            if threshold is None or holding is None or "thresh_perc" not in stimulus:
                raise _PreProtocolFailed(
                    f"protocol {protocol.name}: no threshold current for a threshold-based "
                    f"protocol")
            amp = threshold * float(stimulus["thresh_perc"]) / 100.0
        else:
            amp = float(stimulus["amp"])
            holding = float(stimulus.get("holding_current") or 0.0)
        steps = [(delay, duration, amp)]
        if holding:
            steps.append((0.0, total, holding))
        segments = [runtime.segment(r) for r in protocol.recordings_from_config]
        results = runtime.run(total, steps, segments, deadline)
        for recording, name, (t, v) in zip(protocol.recordings_from_config,
                                           protocol.recording_names, results):
            if keep_traces:
                traces[recording.name] = {"time": t, "voltage": v}
            self._compute(protocol.name, name, t, v, delay, delay + duration, amp, features)

    # -- pre-protocols (threshold-based evaluations) -------------------------------------------

    def _pre_value(self, protocol: str, efel_name: str) -> EFeatureConfig | None:
        return next((f for f in self.efeatures
                     if f.protocol_name == protocol and f.efel_feature_name == efel_name), None)

    def _soma_voltage(self, runtime: _Runtime, tstop: float, steps: list, deadline: float,
                      label: str, traces: dict[str, Any], keep: bool
                      ) -> tuple[np.ndarray, np.ndarray]:
        (t, v), = runtime.run(tstop, steps, [runtime.soma(0.5)], deadline)
        if keep:
            traces[f"{label}.soma.v"] = {"time": t, "voltage": v}
        return t, v

    def _pre_protocols(self, runtime: _Runtime, deadline: float, features: dict[str, Any],
                       traces: dict[str, Any], keep: bool) -> dict[str, float | None]:
        data: dict[str, float | None] = {k: None for k in THRESHOLD_KEYS}
        # RMP: no stimulus.
        t, v = self._soma_voltage(runtime, RMP_DURATION, [], deadline, "RMPProtocol", traces,
                                  keep)
        rmp_values = self._compute(
            "RMPProtocol", "soma.v", t, v, 0.0, RMP_DURATION, 0.0, features,
            extra=[("steady_state_voltage_stimend", self._own_settings(
                "RMPProtocol", "steady_state_voltage_stimend")), ("Spikecount", {})])
        rmp = _mean_value(rmp_values.get("_steady_state_voltage_stimend"))
        spikes = _mean_value(rmp_values.get("_Spikecount")) or 0
        if rmp is None or spikes > 0:
            raise _PreProtocolFailed("RMPProtocol: no resting potential (the cell fires at rest)")
        data["bpo_rmp"] = rmp
        # Holding current: bisection towards the target holding voltage.
        target = self._pre_value("SearchHoldingCurrent", "steady_state_voltage_stimend")
        holding = 0.0
        if target is not None:
            holding = self._search_holding(runtime, target.mean, deadline, features)
            if holding is None:
                raise _PreProtocolFailed("SearchHoldingCurrent: no holding current found")
        data["bpo_holding_current"] = holding
        feature = self._pre_value("SearchHoldingCurrent", "bpo_holding_current")
        if feature is not None:
            features[feature.name] = holding
        # Input resistance: a small hyperpolarising step on top of the holding current.
        rin_values = self._rin_protocol(runtime, holding, deadline, features, traces, keep)
        rin = _mean_value(rin_values.get("_ohmic_input_resistance_vb_ssse"))
        if rin is None or rin <= 0:
            raise _PreProtocolFailed("RinProtocol: no input resistance")
        data["bpo_rin"] = rin
        feature = self._pre_value("RMPProtocol", "steady_state_voltage_stimend")
        if feature is not None:
            features[feature.name] = rmp
        # Threshold current.
        threshold = self._search_threshold(runtime, rmp, rin, holding, deadline)
        if threshold is None:
            raise _PreProtocolFailed("SearchThresholdCurrent: no threshold current found")
        data["bpo_threshold_current"] = threshold
        feature = self._pre_value("SearchThresholdCurrent", "bpo_threshold_current")
        if feature is not None:
            features[feature.name] = threshold
        return data

    def _own_settings(self, protocol: str, efel_name: str) -> dict[str, Any]:
        """The eFEL settings of a pre-protocol's feature, so that a threshold value (bpo_rmp,
        bpo_rin) is computed exactly as the feature that reports it."""
        feature = self._pre_value(protocol, efel_name)
        return dict(feature.efel_settings) if feature is not None else {}

    def _rin_protocol(self, runtime: _Runtime, holding: float, deadline: float,
                      features: dict[str, Any], traces: dict[str, Any], keep: bool
                      ) -> dict[str, Any]:
        steps = [(RIN_DELAY, RIN_DURATION, RIN_AMP)] + ([(0.0, RIN_TOTAL, holding)]
                                                        if holding else [])
        t, v = self._soma_voltage(runtime, RIN_TOTAL, steps, deadline, "RinProtocol", traces,
                                  keep)
        return self._compute(
            "RinProtocol", "soma.v", t, v, RIN_DELAY, RIN_DELAY + RIN_DURATION, RIN_AMP,
            features, extra=[("ohmic_input_resistance_vb_ssse", self._own_settings(
                "RinProtocol", "ohmic_input_resistance_vb_ssse"))])

    def _reuse_threshold_data(self, runtime: _Runtime, data: dict[str, float | None],
                              deadline: float, features: dict[str, Any],
                              traces: dict[str, Any], keep: bool) -> None:
        """Pre-protocol features from earlier threshold data, without the two searches.

        A feature the data holds takes its value; a simulation runs only for a feature the
        data cannot give: the voltage reached at the holding current, or another feature of
        the RMP or Rin protocol.
        """
        holding = data.get("bpo_holding_current") or 0.0
        others = {f.protocol_name for f in self.efeatures if f.protocol_name in PRE_PROTOCOLS
                  and (f.protocol_name, f.efel_feature_name) not in _FROM_THRESHOLD_DATA}
        if "RMPProtocol" in others:
            t, v = self._soma_voltage(runtime, RMP_DURATION, [], deadline, "RMPProtocol",
                                      traces, keep)
            self._compute("RMPProtocol", "soma.v", t, v, 0.0, RMP_DURATION, 0.0, features)
        if "SearchHoldingCurrent" in others and data.get("bpo_holding_current") is not None:
            voltage, _ = self._holding_voltage(runtime, holding, deadline)
            self._record_holding_voltage(features, voltage)
        if "RinProtocol" in others:
            self._rin_protocol(runtime, holding, deadline, features, traces, keep)
        for feature in self.efeatures:
            key = _FROM_THRESHOLD_DATA.get((feature.protocol_name, feature.efel_feature_name))
            if key is not None:
                features[feature.name] = data.get(key)

    def _holding_voltage(self, runtime: _Runtime, current: float, deadline: float
                         ) -> tuple[float | None, bool]:
        steps = [(0.0, HOLDING_DURATION, current)] if current else []
        (t, v), = runtime.run(HOLDING_DURATION, steps, [runtime.soma(0.5)], deadline)
        values = _calculator().compute(
            {"T": t, "V": v, "stim_start": [0.0], "stim_end": [HOLDING_DURATION],
             "stimulus_current": [current]},
            ["steady_state_voltage_stimend", "Spikecount"], self.efel_settings)
        spikes = _mean_value(values.get("Spikecount")) or 0
        return _mean_value(values.get("steady_state_voltage_stimend")), spikes > 0

    def _search_holding(self, runtime: _Runtime, target: float, deadline: float,
                        features: dict[str, Any]) -> float | None:
        settings = self.setup.settings
        low, high = -0.2, 0.2
        v_low, _ = self._holding_voltage(runtime, low, deadline)
        v_high, spiking = self._holding_voltage(runtime, high, deadline)
        widen = 0
        while v_low is not None and v_low > target and widen < 10:
            low -= 0.2
            v_low, _ = self._holding_voltage(runtime, low, deadline)
            widen += 1
        while v_high is not None and not spiking and v_high < target and widen < 10:
            high += 0.2
            v_high, spiking = self._holding_voltage(runtime, high, deadline)
            widen += 1
        if v_low is None or v_low > target:
            return None
        voltage: float | None = None
        for _ in range(settings.max_depth_holding_search):
            mid = (low + high) / 2
            voltage, spiking = self._holding_voltage(runtime, mid, deadline)
            if voltage is not None and abs(voltage - target) < HOLDING_VOLTAGE_PRECISION \
                    and not spiking:
                self._record_holding_voltage(features, voltage)
                return mid
            if spiking or voltage is None or voltage > target:
                high = mid
            else:
                low = mid
        voltage, _ = self._holding_voltage(runtime, low, deadline)
        self._record_holding_voltage(features, voltage)
        return low

    def _record_holding_voltage(self, features: dict[str, Any], voltage: float | None) -> None:
        feature = self._pre_value("SearchHoldingCurrent", "steady_state_voltage_stimend")
        if feature is not None:
            features[feature.name] = voltage

    def _spikes(self, runtime: _Runtime, holding: float, amp: float, deadline: float) -> int:
        steps = [(THRESHOLD_DELAY, THRESHOLD_DURATION, amp)]
        if holding:
            steps.append((0.0, THRESHOLD_TOTAL, holding))
        # A single spike-count simulation may not take longer than spikecount_timeout.
        limit = min(deadline, time.monotonic() + self.setup.settings.spikecount_timeout)
        (t, v), = runtime.run(THRESHOLD_TOTAL, steps, [runtime.soma(0.5)], limit)
        values = _calculator().compute(
            {"T": t, "V": v, "stim_start": [THRESHOLD_DELAY],
             "stim_end": [THRESHOLD_DELAY + THRESHOLD_DURATION], "stimulus_current": [amp]},
            ["Spikecount"], self.efel_settings)
        return int(_mean_value(values.get("Spikecount")) or 0)

    def _search_threshold(self, runtime: _Runtime, rmp: float, rin: float, holding: float,
                          deadline: float) -> float | None:
        settings = self.setup.settings
        upper = min((settings.max_threshold_voltage - rmp) / rin, 2.0)
        if self._spikes(runtime, holding, upper, deadline) == 0:
            return None
        lower = 0.0
        if self._spikes(runtime, holding, lower, deadline) > 0:
            lower -= 0.5
        for _ in range(settings.max_depth_threshold_search):
            if upper - lower < settings.current_precision:
                break
            mid = (lower + upper) / 2
            if self._spikes(runtime, holding, mid, deadline) == 0:
                lower = mid
            else:
                upper = mid
        return upper


class _PreProtocolFailed(Exception):
    """A pre-protocol found no value: the dependent features score max_score."""


def build_evaluator(access_point: Any, include_validation: bool = False,
                    compile_if_needed: bool = True) -> EModelEvaluator:
    """The evaluator of the access point's e-model (mechanisms compiled when needed).

    Args:
        access_point: a :class:`~luigi_emodel.access_point.LocalAccessPoint`.
        include_validation: also simulate and score the validation protocols.
        compile_if_needed: compile the run root's .mod files if they are not compiled yet.
    """
    from luigi_emodel.science.mechanisms import compile_mechanisms, compiled_mechanisms_dir

    mechanisms_dir = (compile_mechanisms(access_point) if compile_if_needed
                      else compiled_mechanisms_dir(access_point))
    recipe = access_point.get_recipes()
    setup = EvaluationSetup(
        emodel=access_point.emodel_metadata.emodel,
        model_configuration=access_point.get_model_configuration(),
        fitness_configuration=access_point.get_fitness_calculator_configuration(),
        settings=access_point.pipeline_settings,
        morphology_path=str(access_point.morph_path),
        mechanisms_dir=str(mechanisms_dir) if mechanisms_dir else None,
        multiloc_map=recipe.get("multiloc_map"),
        include_validation=include_validation,
    )
    return EModelEvaluator(setup)
