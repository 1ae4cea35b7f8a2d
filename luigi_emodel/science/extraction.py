"""Extraction: recordings + targets configuration -> fitness-calculator configuration.

The first step of the pipeline. :func:`extract_save_features_protocols` reads the targets
configuration through the access point, has BluePyEfe read the recordings, find each cell's
rheobase and extract the e-features (with eFEL) at the targets, checks what came out, turns
BluePyEfe's output into the fitness-calculator configuration (e-features with mean and std,
protocols with amplitudes and holding currents) and stores it through the access point.

What BluePyEfe does silently is reported here: a target that matched no recording, an
e-feature with fewer values than ``extraction_threshold_value_save``, a cell whose rheobase
could not be found (each a warning listing exactly what is missing; an error when nothing at
all is left). Files that do not exist or cannot be read, traces with NaN or mismatched
lengths, and units that do not parse are errors naming the file (see :mod:`.readers`).

The conversion follows the reference's (``FitnessCalculatorConfiguration.init_from_bluepyefe``):
with ``name_rmp_protocol`` and ``name_Rin_protocol`` set, protocols are threshold-based,
``voltage_base`` of the RMP protocol becomes ``RMPProtocol.steady_state_voltage_stimend``,
``voltage_base`` of the Rin protocol ``SearchHoldingCurrent.steady_state_voltage_stimend``,
its ``ohmic_input_resistance_vb_ssse`` goes to ``RinProtocol``, and the holding and threshold
currents become the ``bpo_holding_current`` / ``bpo_threshold_current`` targets; otherwise
protocols are plain ``Protocol``. No Luigi here: the caller gives an access point and a map
function.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import math
import pickle
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from luigi_emodel.exceptions import ConfigurationError, ExtractionError, MissingFileError
from luigi_emodel.schemas._base import parse_model
from luigi_emodel.schemas.fitness_configuration import (
    EFeatureConfig,
    FitnessCalculatorConfiguration,
    ProtocolConfig,
    same_protocol,
)
from luigi_emodel.schemas.pipeline_settings import PipelineSettings
from luigi_emodel.schemas.targets_configuration import TargetsConfiguration
from luigi_emodel.science.readers import RecordingReader, check_unit, load_user_reader

__all__ = [
    "AUTO_TARGET_PRESETS",
    "ExtractionPlan",
    "ExtractionResult",
    "check_result",
    "extract_save_features_protocols",
    "plan_extraction",
    "plot_extraction",
    "run_extraction",
    "to_fitness_configuration",
]

logger = logging.getLogger(__name__)

_STEP_PROTOCOLS = ["Step", "FirePattern", "IDrest", "IDRest", "IDthresh", "IDThresh", "IDThres",
                   "IDthres"]

#: Auto-target presets by name (``pipeline_settings.auto_targets_presets``): lists of eCodes
#: and amplitudes (% of rheobase) by priority, and the e-features to extract; the values are
#: those of the reference so that a preset extracts the same targets.
AUTO_TARGET_PRESETS: dict[str, dict[str, Any]] = {
    "firing_pattern": {
        "protocols": [*_STEP_PROTOCOLS, "IV"],
        "amplitudes": [200, 150, 250, 300],
        "efeatures": [
            "Spikecount", "depol_block_bool", "voltage_base", "voltage_after_stim",
            "mean_frequency", "time_to_first_spike", "time_to_last_spike",
            "inv_time_to_first_spike", "inv_first_ISI", "inv_second_ISI", "inv_third_ISI",
            "inv_last_ISI", "ISI_CV", "ISI_log_slope", "doublet_ISI", "AHP_depth",
            "AHP_time_from_peak", "strict_burst_number", "strict_burst_mean_freq",
            "number_initial_spikes", "irregularity_index", "adaptation_index",
        ],
        "min_recordings_per_amplitude": 1,
        "preferred_number_protocols": 2,
        "tolerance": 20.0,
    },
    "ap_waveform": {
        "protocols": ["APWaveform", "APwaveform", *_STEP_PROTOCOLS, "IV"],
        "amplitudes": [300, 350, 250, 400, 200],
        "efeatures": ["AP_amplitude", "AP1_amp", "AP_duration_half_width", "AHP_depth"],
        "min_recordings_per_amplitude": 1,
        "preferred_number_protocols": 1,
        "tolerance": 20.0,
    },
    "iv": {
        "protocols": ["IV", "Step"],
        "amplitudes": [0, -40, -100],
        "efeatures": ["voltage_base", "ohmic_input_resistance_vb_ssse"],
        "min_recordings_per_amplitude": 1,
        "preferred_number_protocols": 2,
        "tolerance": 10.0,
    },
    "validation": {
        "protocols": ["IDhyperpol", "IDHyperpol"],
        "amplitudes": [150, 200],
        "efeatures": ["mean_frequency", "voltage_base", "depol_block_bool"],
        "min_recordings_per_amplitude": 1,
        "preferred_number_protocols": 2,
        "tolerance": 20.0,
    },
}

#: Keys of an auto target (BluePyEfe's ``AutoTarget``); the first three are required.
_AUTO_TARGET_KEYS = ("protocols", "amplitudes", "efeatures", "min_recordings_per_amplitude",
                     "preferred_number_protocols", "tolerance")
#: Keys of a file's metadata that are paths (resolved against the run root).
_PATH_KEYS = ("filepath", "i_file", "v_file")
#: Keys of a file's metadata that must be numbers.
_NUMBER_KEYS = ("ljp", "dt", "ton", "toff", "tmid", "tmid2", "amp", "hypamp", "v_corr")
_UNIT_KEYS = ("v_unit", "i_unit", "t_unit")
_RECORDING = "soma.v"
#: eFEL feature of the pre-protocols' voltage targets (RMP, holding voltage).
_HOLDING_VOLTAGE = "steady_state_voltage_stimend"


# -- plan: what to read and what to extract -------------------------------------------------------


@dataclass
class ExtractionPlan:
    """Everything BluePyEfe needs, checked: files, targets, rheobase, reader, settings.

    ``targets`` are BluePyEfe targets (explicit targets); ``auto_targets`` the specifications
    of BluePyEfe ``AutoTarget`` objects when the targets are found automatically.
    """

    files_metadata: dict[str, dict[str, list[dict[str, Any]]]]
    targets: list[dict[str, Any]] | None
    auto_targets: list[dict[str, Any]] | None
    protocols_rheobase: list[str]
    absolute_amplitude: bool
    reader: RecordingReader
    efel_settings: dict[str, Any]
    rheobase_strategy: str
    rheobase_settings: dict[str, Any] | None
    threshold_nvalue_save: int
    default_std_value: float
    weights: dict[tuple[str, float, str], float] = field(default_factory=dict)
    source: str = "targets configuration"


@dataclass
class ExtractionResult:
    """BluePyEfe's objects and output: cells (with recordings), protocols, targets used,
    e-features and protocol definitions (legacy dicts keyed by ``<protocol>_<amplitude>``)
    and holding/threshold currents."""

    cells: list[Any]
    protocols: list[Any]
    targets: list[dict[str, Any]]
    efeatures: dict[str, Any]
    stimuli: dict[str, Any]
    currents: dict[str, Any]
    auto_targets: list[Any] = field(default_factory=list)


def _amplitude(value: float, absolute: bool = False) -> float | int:
    """The amplitude of a target as BluePyEfe gets it; it names the protocol
    ``f"{protocol}_{amplitude}"``.

    The reference passes the JSON number as it is, so ``150`` gives ``IDrest_150`` and
    ``1.0`` gives ``Step_1.0``; our schema reads every amplitude as a float. Relative
    amplitudes (% of rheobase) are written as whole numbers, so a whole one becomes an int
    again; absolute ones (nA) are written as decimals and stay floats.
    """
    value = float(value)
    return int(value) if value.is_integer() and not absolute else value


def _targets_configuration(access_point: Any) -> tuple[TargetsConfiguration, str]:
    """The targets configuration and how to name it in messages.

    From ``path_extract_config``; without it, from the settings' ``files_for_extraction``,
    ``targets``, ``protocols_rheobase`` and ``auto_targets``, as the reference builds it.
    Targets missing from the file come from the settings (``targets``, ``auto_targets``, then
    ``auto_targets_presets``).
    """
    settings: PipelineSettings = access_point.pipeline_settings
    if settings.path_extract_config is not None:
        source = settings.path_extract_config
        configuration = access_point.get_targets_configuration()
    else:
        source = "pipeline_settings"
        if not settings.files_for_extraction:
            raise ConfigurationError(
                "pipeline_settings.path_extract_config: not set (and no files_for_extraction "
                "in the settings): there are no recordings to extract e-features from"
            )
        configuration = parse_model(TargetsConfiguration, {
            "files": settings.files_for_extraction,
            "targets": settings.targets,
            "protocols_rheobase": settings.protocols_rheobase,
            "auto_targets": settings.auto_targets,
        }, "pipeline_settings")
    if configuration.targets or configuration.auto_targets:
        return configuration, source
    if settings.targets:
        configuration = configuration.model_copy(update={"targets": parse_model(
            TargetsConfiguration, {"targets": settings.targets}, "pipeline_settings").targets})
    elif settings.auto_targets:
        configuration = configuration.model_copy(update={"auto_targets": settings.auto_targets})
    elif settings.auto_targets_presets:
        unknown = [p for p in settings.auto_targets_presets if p not in AUTO_TARGET_PRESETS]
        if unknown:
            raise ConfigurationError(
                f"pipeline_settings.auto_targets_presets: unknown preset(s) {unknown} "
                f"(known: {', '.join(AUTO_TARGET_PRESETS)})"
            )
        configuration = configuration.model_copy(update={"auto_targets": [
            copy.deepcopy(AUTO_TARGET_PRESETS[p]) for p in settings.auto_targets_presets]})
    else:
        raise ConfigurationError(
            f"{source}: no targets and no auto_targets (and none in pipeline_settings: "
            f"targets, auto_targets or auto_targets_presets)"
        )
    return configuration, source


def _known_ecode(name: str) -> bool:
    from bluepyefe.ecode import eCodes

    return any(code in name.lower() for code in eCodes)


@functools.lru_cache(maxsize=1)
def _efel_feature_names() -> frozenset[str]:
    import efel

    # Asked once: each call re-initialises eFEL (about 10 ms).
    return frozenset(efel.get_feature_names())


def _check_efeature(name: Any, where: str) -> None:
    if not isinstance(name, str) or name not in _efel_feature_names():
        raise ConfigurationError(f"{where}: {name!r} is not an eFEL feature")


def _reader(access_point: Any, settings: PipelineSettings) -> RecordingReader:
    spec = settings.extraction_reader
    root = getattr(access_point, "run_root", None)
    if not spec:
        return RecordingReader(root=root)
    if isinstance(spec, str) or len(spec) != 2:
        raise ConfigurationError(
            f"pipeline_settings.extraction_reader: expected [path/to/reader.py, function_name], "
            f"got {spec!r}"
        )
    path = str(access_point.resolve_input(spec[0]))
    load_user_reader(path, spec[1])  # fail now, with a clear message, not in a worker
    return RecordingReader(user_reader=(path, spec[1]), root=root)


def _rheobase_function(strategy: str) -> Callable[..., Any]:
    from bluepyefe import rheobase

    functions = {
        "absolute": rheobase.compute_rheobase_absolute,
        "flush": rheobase.compute_rheobase_flush,
        "majority": rheobase.compute_rheobase_majority_bin,
        "interpolation": rheobase.compute_rheobase_interpolation,
    }
    if strategy not in functions:
        raise ConfigurationError(
            f"pipeline_settings.rheobase_strategy_extraction: unknown strategy {strategy!r} "
            f"(known: {', '.join(functions)})"
        )
    return functions[strategy]


def _check_rheobase_settings(strategy: str, rheobase_settings: dict[str, Any] | None) -> None:
    function = _rheobase_function(strategy)
    accepted = set(inspect.signature(function).parameters) - {"cell", "protocols_rheobase"}
    unknown = sorted(set(rheobase_settings or {}) - accepted)
    if unknown:
        raise ConfigurationError(
            f"pipeline_settings.rheobase_settings_extraction: unknown key(s) {unknown} for "
            f"strategy {strategy!r} (accepted: {sorted(accepted)})"
        )


def _check_auto_targets(auto_targets: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    checked = []
    for index, spec in enumerate(auto_targets):
        where = f"{source}: auto_targets[{index}]"
        if not isinstance(spec, dict):
            raise ConfigurationError(f"{where}: expected an object")
        unknown = sorted(set(spec) - set(_AUTO_TARGET_KEYS))
        if unknown:
            raise ConfigurationError(f"{where}: unknown key(s) {unknown} (accepted: "
                                     f"{', '.join(_AUTO_TARGET_KEYS)})")
        for key in _AUTO_TARGET_KEYS[:3]:
            if not isinstance(spec.get(key), list) or not spec[key]:
                raise ConfigurationError(f"{where}.{key}: expected a non-empty list")
        for j, name in enumerate(spec["efeatures"]):
            _check_efeature(name, f"{where}.efeatures[{j}]")
        checked.append(copy.deepcopy(spec))
    return checked


def _check_threshold_targets(settings: PipelineSettings, targets: list[Any] | None,
                             auto_targets: list[dict[str, Any]] | None, source: str,
                             absolute: bool) -> None:
    """Threshold-based protocols need voltage_base on the RMP protocol and voltage_base and
    ohmic_input_resistance_vb_ssse on the Rin protocol (checked as the reference does)."""
    rmp, rin = settings.name_rmp_protocol, settings.name_Rin_protocol
    if rmp is None or rin is None:
        return
    if targets:
        def features(name: Any) -> set[str]:
            return {t.efeature for t in targets
                    if same_protocol(name, f"{t.protocol}_{_amplitude(t.amplitude, absolute)}")}
    else:
        def features(name: Any) -> set[str]:
            base = name[0] if isinstance(name, (list, tuple)) else str(name).rpartition("_")[0]
            return {f for t in auto_targets or [] if base in t["protocols"]
                    for f in t["efeatures"]}
    needed = [("voltage_base", rmp, "name_rmp_protocol"), ("voltage_base", rin,
              "name_Rin_protocol"), ("ohmic_input_resistance_vb_ssse", rin, "name_Rin_protocol")]
    missing = [f"{feature} on {name} (pipeline_settings.{key})"
               for feature, name, key in needed if feature not in features(name)]
    if missing:
        raise ConfigurationError(
            f"{source}: targets: threshold-based protocols need a target for "
            + "; ".join(missing) + " (or unset name_rmp_protocol and name_Rin_protocol)"
        )


def plan_extraction(access_point: Any) -> tuple[ExtractionPlan, TargetsConfiguration]:
    """Read and check the targets configuration and the settings; build BluePyEfe's input.

    Raises:
        ConfigurationError: a field of the targets configuration or of the settings is wrong
            (the message names the file and the field).
        MissingFileError: recordings that do not exist (every one is listed).
    """
    settings: PipelineSettings = access_point.pipeline_settings
    configuration, source = _targets_configuration(access_point)
    absolute = settings.extract_absolute_amplitudes
    auto_targets = None
    targets = None
    weights: dict[tuple[str, float, str], float] = {}
    if configuration.targets:
        targets = []
        for index, target in enumerate(configuration.targets):
            _check_efeature(target.efeature, f"{source}: targets[{index}].efeature")
            targets.append({
                "efeature": target.efeature,
                "protocol": target.protocol,
                "amplitude": _amplitude(target.amplitude, absolute),
                "tolerance": target.tolerance,
                "efeature_name": target.efeature_name,
                "efel_settings": copy.deepcopy(target.efel_settings),
            })
            name = target.efeature_name or target.efeature
            weights[(target.protocol, float(target.amplitude), name)] = target.weight
        used = {t.protocol for t in configuration.targets}
    else:
        if absolute:
            raise ConfigurationError(
                f"{source}: auto_targets: automatic targets are in % of the rheobase and "
                f"cannot be used with pipeline_settings.extract_absolute_amplitudes"
            )
        auto_targets = _check_auto_targets(configuration.auto_targets or [], source)
        used = {p for spec in auto_targets for p in spec["protocols"]}
    _check_threshold_targets(settings, configuration.targets, auto_targets, source, absolute)

    if absolute:
        protocols_rheobase: list[str] = list(configuration.protocols_rheobase)
    else:
        from bluepyefe.tools import PRESET_PROTOCOLS_RHEOBASE

        # As BluePyEfe: without protocols_rheobase, the usual step protocols are used.
        protocols_rheobase = list(configuration.protocols_rheobase) or list(
            PRESET_PROTOCOLS_RHEOBASE)
        _check_rheobase_settings(settings.rheobase_strategy_extraction,
                                 settings.rheobase_settings_extraction)
        used |= set(protocols_rheobase)

    files_metadata = _files_metadata(access_point, configuration, source, used)
    if not files_metadata:
        protocols = ", ".join(sorted(used))
        raise ConfigurationError(
            f"{source}: files: no file has any of the protocols the targets and "
            f"protocols_rheobase use ({protocols})"
        )
    if not absolute and configuration.protocols_rheobase:
        lacking = [cell for cell, ecodes in files_metadata.items()
                   if not any(p in ecodes for p in protocols_rheobase)]
        if lacking:
            raise ConfigurationError(
                f"{source}: protocols_rheobase: cell(s) {', '.join(lacking)} have no recording "
                f"of {protocols_rheobase}, so their rheobase cannot be found (add such files "
                f"or remove the cells)"
            )
    plan = ExtractionPlan(
        files_metadata=files_metadata,
        targets=targets,
        auto_targets=auto_targets,
        protocols_rheobase=protocols_rheobase,
        absolute_amplitude=absolute,
        reader=_reader(access_point, settings),
        efel_settings=dict(settings.efel_settings),
        rheobase_strategy=settings.rheobase_strategy_extraction,
        rheobase_settings=copy.deepcopy(settings.rheobase_settings_extraction),
        threshold_nvalue_save=settings.extraction_threshold_value_save,
        default_std_value=settings.default_std_value,
        weights=weights,
        source=source,
    )
    return plan, configuration


def _files_metadata(access_point: Any, configuration: TargetsConfiguration, source: str,
                    used: set[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """BluePyEfe's files metadata ``{cell: {ecode: [metadata]}}`` of the used eCodes, with
    every path resolved against the run root and every unit and number checked."""
    files_metadata: dict[str, dict[str, list[dict[str, Any]]]] = {}
    missing: dict[Path, str] = {}  # each missing file once, under the first field naming it
    for index, trace in enumerate(configuration.files):
        where = f"{source}: files[{index}]"
        if not trace.filepath:
            raise ConfigurationError(
                f"{where}.filepath: missing (a resource_id alone cannot be read locally)"
            )
        if not trace.ecodes:
            raise ConfigurationError(f"{where}.ecodes: missing: name the eCode(s) of the file, "
                                     f"e.g. {{\"IDrest\": {{}}}}")
        other = dict(trace.other_metadata or {})
        sources = {"other_metadata": other}
        for ecode, ecode_metadata in trace.ecodes.items():
            if ecode not in used:
                continue
            if not _known_ecode(ecode):
                from bluepyefe.ecode import eCodes

                raise ConfigurationError(
                    f"{where}.ecodes.{ecode}: BluePyEfe knows no eCode in this name (the name "
                    f"must contain one of: {', '.join(sorted(eCodes))})"
                )
            sources[f"ecodes.{ecode}"] = dict(ecode_metadata or {})
            # As the reference: the file's other_metadata win over the eCode's metadata.
            metadata = {**(ecode_metadata or {}), **other, "filepath": trace.filepath}
            metadata.setdefault("protocol_name", ecode)
            for key in _PATH_KEYS:
                if metadata.get(key) is None:
                    continue
                if not isinstance(metadata[key], str):
                    raise ConfigurationError(f"{where}: {key}: expected a path")
                path = access_point.resolve_input(metadata[key])
                if not path.is_file() and path not in missing:
                    missing[path] = f"{where}.{key}: {metadata[key]} ({path})"
                metadata[key] = str(path)
            files_metadata.setdefault(trace.cell_name, {}).setdefault(ecode, []).append(metadata)
        for name, values in sources.items():
            for key in _UNIT_KEYS:
                if values.get(key) is not None:
                    problem = check_unit(key, values[key])
                    if problem:
                        raise ConfigurationError(f"{where}.{name}.{key}: {problem}")
            for key in _NUMBER_KEYS:
                value = values.get(key)
                if value is not None and (isinstance(value, bool)
                                          or not isinstance(value, (int, float))):
                    raise ConfigurationError(f"{where}.{name}.{key}: expected a number, got "
                                             f"{value!r}")
    if missing:
        raise MissingFileError(
            f"{len(missing)} recording file(s) not found:\n  " + "\n  ".join(missing.values())
        )
    return files_metadata


# -- run: BluePyEfe -------------------------------------------------------------------------------


#: Warnings of the libraries that BluePyEfe's calls trigger and that say nothing about the
#: data: eFEL's renamed functions and features (``Use get_feature_values instead``), and
#: numpy's nan-reductions over empty or all-NaN values, which BluePyEfe turns into NaN and
#: which the checks here report in plain words.
_QUIET: tuple[tuple[str, type[Warning]], ...] = (
    (r"Use \S+ instead", DeprecationWarning),
    ("Mean of empty slice", RuntimeWarning),
    ("Degrees of freedom <= 0", RuntimeWarning),
    ("invalid value encountered", RuntimeWarning),
)


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        for message, category in _QUIET:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


class _Quiet:
    """A function run with :data:`_QUIET` warnings silenced (picklable: it runs wherever the
    map function sends it)."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def __call__(self, *args: Any) -> Any:
        with _quiet():
            return self.function(*args)


def _quiet_map(mapper: Callable[..., Iterable[Any]]) -> Callable[..., list[Any]]:
    def mapped(function: Callable[..., Any], items: Iterable[Any]) -> list[Any]:
        return list(mapper(_Quiet(function), list(items)))

    return mapped


def run_extraction(plan: ExtractionPlan, mapper: Callable[..., Iterable[Any]] = map
                   ) -> ExtractionResult:
    """Read the recordings, find the rheobases and extract the e-features with BluePyEfe.

    The same calls, in the same order, as ``bluepyefe.extract.extract_efeatures`` (so the
    means and stds are BluePyEfe's), keeping the cells and protocols for the checks and the
    figures. ``mapper`` maps BluePyEfe's per-cell work (reading, feature extraction).
    """
    import bluepyefe.extract as bpe
    from bluepyefe.auto_targets import AutoTarget

    map_function = _quiet_map(mapper)
    auto: list[Any] = []
    with _quiet():
        cells = bpe.read_recordings(plan.files_metadata, recording_reader=plan.reader,
                                    map_function=map_function,
                                    efel_settings=plan.efel_settings)
        if plan.targets is not None:
            targets = copy.deepcopy(plan.targets)
            cells = bpe.extract_efeatures_at_targets(cells, targets, map_function=map_function,
                                                     efel_settings=plan.efel_settings)
            if not plan.absolute_amplitude:
                _compute_rheobase(cells, plan)
                _require_rheobase(cells, plan)
        else:
            _compute_rheobase(cells, plan)
            _require_rheobase(cells, plan)
            recordings = [r for cell in cells for r in cell.recordings]
            auto = [AutoTarget(**spec) for spec in copy.deepcopy(plan.auto_targets or [])]
            targets = []
            for auto_target in auto:
                auto_target.select_ecode_and_amplitude(recordings)
                targets += auto_target.generate_targets()
            cells = bpe.extract_efeatures_at_targets(cells, targets, map_function=map_function,
                                                     efel_settings=plan.efel_settings)
        protocols = bpe.group_efeatures(cells, targets,
                                        absolute_amplitude=plan.absolute_amplitude,
                                        use_global_rheobase=True, protocol_mode="mean",
                                        efel_settings=plan.efel_settings)
        efeatures, stimuli, currents = bpe.create_feature_protocol_files(
            cells, protocols, output_directory=None,
            threshold_nvalue_save=plan.threshold_nvalue_save, write_files=False,
            default_std_value=plan.default_std_value,
        )
    return ExtractionResult(cells=cells, protocols=protocols, targets=targets,
                            efeatures=efeatures, stimuli=stimuli, currents=currents,
                            auto_targets=auto)


def _compute_rheobase(cells: list[Any], plan: ExtractionPlan) -> None:
    import bluepyefe.extract as bpe

    rheobase_settings = plan.rheobase_settings
    if plan.targets is None and rheobase_settings is None and plan.rheobase_strategy == "flush":
        rheobase_settings = {"upper_bound_spikecount": 4}  # BluePyEfe's default for auto targets
    bpe.compute_rheobase(cells, protocols_rheobase=plan.protocols_rheobase,
                         rheobase_strategy=plan.rheobase_strategy,
                         rheobase_settings=rheobase_settings)


def _require_rheobase(cells: list[Any], plan: ExtractionPlan) -> None:
    """Warn about each cell without a rheobase (its recordings are not used); error if none
    has one."""
    lacking = []
    for cell in cells:
        if cell.rheobase is not None:
            continue
        sweeps = sorted(
            (float(r.amp), r.spikecount) for r in cell.recordings
            if r.protocol_name in plan.protocols_rheobase and r.amp is not None
        )
        if not sweeps:
            reason = f"no recording of {plan.protocols_rheobase}"
        else:
            # eFEL gives no peak times (None) when it detects no spike.
            listed = ", ".join(f"{amp:.3g} nA: {n or 'no'} spike(s)" for amp, n in sweeps)
            reason = (f"strategy {plan.rheobase_strategy!r} found no rheobase among "
                      f"{len(sweeps)} sweep(s) of {plan.protocols_rheobase} ({listed})")
        lacking.append(f"{cell.name}: {reason}")
    if not lacking:
        return
    text = "\n  ".join(lacking)
    if len(lacking) == len(cells):
        raise ExtractionError(
            f"{plan.source}: no cell has a rheobase, so no amplitude in % of rheobase can be "
            f"matched:\n  {text}"
        )
    logger.warning("rheobase not found for %d of %d cell(s); their recordings are not used:\n"
                   "  %s", len(lacking), len(cells), text)


# -- checks of the result --------------------------------------------------------------------------


def _unit(absolute: bool) -> str:
    return "nA" if absolute else "%"


def check_result(plan: ExtractionPlan, result: ExtractionResult) -> None:
    """Report what BluePyEfe dropped: targets that matched no recording, e-features with too
    few values, auto targets without data. Each a warning listing everything concerned;
    an ExtractionError when nothing is left."""
    unit = _unit(plan.absolute_amplitude)
    unmatched = []
    for protocol in result.protocols:
        if protocol.recordings:
            continue
        available = sorted({
            round(float(r.amp if plan.absolute_amplitude else r.amp_rel), 3)
            for cell in result.cells for r in cell.get_recordings_by_protocol_name(protocol.name)
            if (r.amp if plan.absolute_amplitude else r.amp_rel) is not None
        })
        features = ", ".join(t.efeature_name for t in protocol.feature_targets)
        if available:
            shown = ", ".join(f"{a:g}" for a in available)
            reason = f"recorded amplitudes: {shown} {unit}"
        else:
            reason = "no usable recording of this protocol"
        unmatched.append(f"{protocol.name} at {protocol.amplitude} ± {protocol.tolerance} "
                         f"{unit} ({features}): {reason}")
    for index, auto_target in enumerate(result.auto_targets):
        if not auto_target.is_valid():
            unmatched.append(
                f"auto_targets[{index}] (protocols {auto_target.protocols}, amplitudes "
                f"{auto_target.amplitudes} ± {auto_target.tolerance} %): fewer than "
                f"{auto_target.min_recordings_per_amplitude} recording(s) at every amplitude"
            )
    few = []
    for protocol in result.protocols:
        if not protocol.recordings:
            continue
        for target in protocol.feature_targets:
            if target.sample_size < plan.threshold_nvalue_save:
                few.append(
                    f"{protocol.stimulus_name} {target.efeature_name}: {target.sample_size} "
                    f"value(s) from {len(protocol.recordings)} matching recording(s), "
                    f"extraction_threshold_value_save is {plan.threshold_nvalue_save}"
                )
    if not result.efeatures:
        details = "\n  ".join(unmatched + few) or "(BluePyEfe returned nothing)"
        raise ExtractionError(
            f"{plan.source}: no e-feature could be extracted from the recordings:\n  {details}"
        )
    if unmatched:
        logger.warning("%d target(s) matched no recording and are not in the output:\n  %s",
                       len(unmatched), "\n  ".join(unmatched))
    if few:
        logger.warning("%d e-feature(s) have too few values and are not in the output:\n  %s",
                       len(few), "\n  ".join(few))


# -- conversion to the fitness-calculator configuration -------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays as Python numbers and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _mapped_name(name: str, mapping: dict[str, str] | None) -> str:
    """The name of a protocol after ``protocols_mapping``.

    The reference takes the first key that *contains* the name (so ``IDrest_15`` would take
    the entry of ``IDrest_150``); here a key maps the protocol it names (case-insensitive,
    ``IDrest_150`` = ``IDrest_150.0``).
    """
    for key, value in (mapping or {}).items():
        if key.lower() == name.lower() or same_protocol(key.lower(), name.lower()):
            return value
    return name


def _is(name: Any, protocol: str, original: str) -> bool:
    return name is not None and (same_protocol(name, protocol) or same_protocol(name, original))


def to_fitness_configuration(
    efeatures: dict[str, Any],
    stimuli: dict[str, Any],
    currents: dict[str, Any],
    settings: PipelineSettings,
    configuration: TargetsConfiguration | None = None,
    weights: dict[tuple[str, float, str], float] | None = None,
    source: str = "targets configuration",
) -> FitnessCalculatorConfiguration:
    """BluePyEfe's output as the fitness-calculator configuration (new format).

    Args:
        efeatures: ``{"<protocol>_<amp>": {"soma": [{"feature", "val": [mean, std], "n",
            "efel_settings", "efeature_name"}]}}``.
        stimuli: ``{"<protocol>_<amp>": {"step": {...}, "holding": {"amp": ...}}}``.
        currents: ``{"holding_current": [mean, std], "threshold_current": [mean, std]}``.
        settings: the pipeline settings (threshold-based names, validation protocols,
            stds, stochasticity, ``bound_max_std``, ``interpolate_RMP_extraction``,
            ``minimum_protocol_delay``).
        configuration: the targets configuration, for ``protocols_mapping`` and the
            ``additional_fitness_*`` items.
        weights: ``{(protocol, amplitude, efeature name): weight}`` of the targets.
        source: how to name the targets configuration in messages.
    """
    mapping = configuration.protocols_mapping if configuration else None
    rmp, rin = settings.name_rmp_protocol, settings.name_Rin_protocol
    threshold_based = rmp is not None and rin is not None
    for name, key in ((rmp, "name_rmp_protocol"), (rin, "name_Rin_protocol")):
        if name is not None and not any(same_protocol(name, p) for p in efeatures):
            raise ExtractionError(
                f"pipeline_settings.{key}: protocol {name!r} could not be extracted from the "
                f"recordings (extracted: {', '.join(efeatures) or 'none'})"
            )
    stochasticity = settings.stochasticity
    protocols: list[dict[str, Any]] = []
    for original, definition in stimuli.items():
        name = _mapped_name(original, mapping)
        stimulus = _plain(copy.deepcopy(definition["step"]))
        stimulus["holding_current"] = _plain(definition["holding"]["amp"])
        protocols.append({
            "name": name,
            "stimuli": [stimulus],
            "recordings_from_config": [{"type": "CompRecording", "name": f"{name}.{_RECORDING}",
                                        "location": "soma", "variable": "v"}],
            "validation": any(same_protocol(v, name) or same_protocol(v, original)
                              for v in settings.validation_protocols),
            "protocol_type": "ThresholdBasedProtocol" if threshold_based else "Protocol",
            "stochasticity": (name in stochasticity if isinstance(stochasticity, list)
                              else bool(stochasticity)),
        })
    features: list[dict[str, Any]] = []
    for original, by_location in efeatures.items():
        name = _mapped_name(original, mapping)
        base, _, amp = original.rpartition("_")
        try:
            amplitude = float(amp)
        except ValueError:
            base, amplitude = "", math.nan
        for location, feature_list in by_location.items():
            recording = _RECORDING if location == "soma" else location
            for feature in feature_list:
                efel_name = feature["feature"]
                efeature_name = feature.get("efeature_name")
                weight = (weights or {}).get((base, amplitude, efeature_name or efel_name), 1.0)
                protocol_name = name
                # The eFEL feature changes, its name (efeature_name) stays: as the reference,
                # whose objectives are then named e.g. RMPProtocol.soma.v.voltage_base.
                if _is(rmp, name, original) and efel_name == "voltage_base":
                    protocol_name, efel_name = "RMPProtocol", _HOLDING_VOLTAGE
                if _is(rin, name, original) and efel_name == "voltage_base":
                    protocol_name, efel_name = "SearchHoldingCurrent", _HOLDING_VOLTAGE
                if _is(rin, name, original) and efel_name == "ohmic_input_resistance_vb_ssse":
                    protocol_name = "RinProtocol"
                mean, std = feature["val"]
                features.append({
                    "efel_feature_name": efel_name,
                    "protocol_name": protocol_name,
                    "recording_name": recording,
                    "mean": _plain(mean),
                    "original_std": _plain(std),
                    "sample_size": _plain(feature.get("n")),
                    "efeature_name": efeature_name,
                    "weight": weight,
                    "efel_settings": _plain(copy.deepcopy(feature.get("efel_settings", {}))),
                    "threshold_efeature_std": settings.threshold_efeature_std,
                    "default_std_value": settings.default_std_value,
                })
    if threshold_based:
        for efel_name, protocol_name, key in (
            ("bpo_holding_current", "SearchHoldingCurrent", "holding_current"),
            ("bpo_threshold_current", "SearchThresholdCurrent", "threshold_current"),
        ):
            mean, std = (_plain(v) for v in currents[key])
            if mean is None or not math.isfinite(mean):
                raise ExtractionError(f"no {key.replace('_', ' ')} could be computed from the "
                                      f"recordings, so threshold-based protocols cannot be set up")
            features.append({
                "efel_feature_name": efel_name, "protocol_name": protocol_name,
                "recording_name": _RECORDING, "mean": mean, "original_std": std,
                "threshold_efeature_std": settings.threshold_efeature_std,
                "default_std_value": settings.default_std_value,
            })
    used = {f["protocol_name"] for f in features}
    protocols = [p for p in protocols if p["name"] in used]

    if settings.bound_max_std:
        for feature in features:
            # As the reference: a std larger than |mean| is cut to |mean| (a std already set
            # to the default value is left alone).
            std, mean = feature["original_std"], feature["mean"]
            if std > abs(mean) and std != settings.default_std_value:
                feature["original_std"] = abs(mean)

    if configuration is not None:
        for index, extra in enumerate(configuration.additional_fitness_protocols or []):
            protocols.append(parse_model(ProtocolConfig, extra, source,
                                         prefix=f"additional_fitness_protocols[{index}]")
                             .as_dict())
        for index, extra in enumerate(configuration.additional_fitness_efeatures or []):
            extra = dict(extra)
            extra.setdefault("threshold_efeature_std", settings.threshold_efeature_std)
            extra.setdefault("default_std_value", settings.default_std_value)
            features.append(parse_model(EFeatureConfig, extra, source,
                                        prefix=f"additional_fitness_efeatures[{index}]")
                            .as_dict())

    if settings.interpolate_RMP_extraction:
        _interpolate_rmp(features)
    _apply_minimum_delay(protocols, features, settings.minimum_protocol_delay)
    return parse_model(FitnessCalculatorConfiguration,
                       {"efeatures": features, "protocols": protocols},
                       "extracted fitness-calculator configuration")


def _interpolate_rmp(features: list[dict[str, Any]]) -> None:
    """RMP = holding voltage - Rin × holding current, for recordings all made under holding
    (``interpolate_RMP_extraction``); replaces the RMPProtocol target's mean."""
    rin = holding = None
    voltages = []
    for feature in features:
        name, protocol = feature["efel_feature_name"], feature["protocol_name"]
        if name == "ohmic_input_resistance_vb_ssse" and protocol == "RinProtocol":
            rin = feature["mean"]
        if name == "bpo_holding_current":
            holding = feature["mean"]
        if name == "voltage_base" and any(k in protocol.lower()
                                          for k in ("iv", "idrest", "idthres")):
            voltages.append(feature["mean"])
    missing = [what for what, value in (("the input resistance (RinProtocol)", rin),
                                        ("the holding current", holding)) if value is None]
    if not voltages:
        missing.append("a voltage_base on an IV, IDrest or IDthres protocol")
    target = next((f for f in features if f["protocol_name"] == "RMPProtocol"
                   and f["efel_feature_name"] == _HOLDING_VOLTAGE), None)
    if target is None:
        missing.append("the RMPProtocol target (set name_rmp_protocol)")
    if missing:
        raise ExtractionError("pipeline_settings.interpolate_RMP_extraction: cannot interpolate "
                              "the RMP without " + ", ".join(missing))
    assert target is not None and rin is not None and holding is not None
    target["mean"] = float(np.median(voltages)) - rin * holding


def _apply_minimum_delay(protocols: list[dict[str, Any]], features: list[dict[str, Any]],
                         minimum: float) -> None:
    """Move steps that start before ``minimum_protocol_delay`` (and their features' stim
    windows) later, as the reference does."""
    for protocol in protocols:
        stimulus = protocol["stimuli"][0]
        delay = stimulus.get("delay")
        if delay is None or delay >= minimum:
            continue
        shift = minimum - delay
        stimulus["delay"] = minimum
        stimulus["totduration"] = stimulus["totduration"] + shift
        for feature in features:
            if feature["protocol_name"] == protocol["name"]:
                settings = feature.setdefault("efel_settings", {})
                for key in ("stim_start", "stim_end"):
                    if key in settings:
                        settings[key] += shift


# -- figures --------------------------------------------------------------------------------------


def plot_extraction(access_point: Any, result: ExtractionResult, absolute: bool) -> list[Path]:
    """One PDF per protocol under ``figures_dir("extraction")``: for each e-feature, the value
    of every recording against its amplitude (one colour per cell) and the extracted mean ±
    std at each target amplitude."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    folder = Path(access_point.figures_dir("extraction"))
    folder.mkdir(parents=True, exist_ok=True)
    prefix = access_point.emodel_metadata.as_string()
    unit = "amplitude (nA)" if absolute else "amplitude (% rheobase)"
    by_protocol: dict[str, list[Any]] = {}
    for protocol in result.protocols:
        by_protocol.setdefault(protocol.name, []).append(protocol)
    paths = []
    for name, protocols in by_protocol.items():
        names = list(dict.fromkeys(t.efeature_name for p in protocols for t in p.feature_targets))
        columns = min(3, len(names))
        rows = math.ceil(len(names) / columns)
        figure = Figure(figsize=(4.2 * columns, 3.2 * rows), layout="constrained")
        for index, efeature in enumerate(names):
            axis = figure.add_subplot(rows, columns, index + 1)
            for number, cell in enumerate(result.cells):
                points = [
                    (r.amp if absolute else r.amp_rel, r.efeatures[efeature])
                    for r in cell.get_recordings_by_protocol_name(name)
                    if efeature in r.efeatures and (r.amp if absolute else r.amp_rel) is not None
                ]
                if points:
                    xs, ys = zip(*points)
                    axis.plot(xs, ys, "o", ms=4, alpha=0.6, color=f"C{number % 10}",
                              label=cell.name)
            for protocol in protocols:
                for target in protocol.feature_targets:
                    if target.efeature_name == efeature and target.sample_size:
                        axis.errorbar([protocol.amplitude], [target.mean], yerr=[target.std],
                                      fmt="s", color="black", capsize=3)
            axis.set_title(efeature, fontsize=9)
            axis.set_xlabel(unit, fontsize=8)
            if index == 0 and len(result.cells) <= 10:
                axis.legend(fontsize=6)
        figure.suptitle(f"{name}: recordings (dots) and extracted mean ± std (squares)",
                        fontsize=10)
        path = folder / f"{prefix}__{name}.pdf"
        with PdfPages(path) as pdf:
            pdf.savefig(figure)
        paths.append(path)
    return paths


# -- the pipeline step ----------------------------------------------------------------------------


def extract_save_features_protocols(
    access_point: Any, mapper: Callable[..., Iterable[Any]] = map
) -> FitnessCalculatorConfiguration:
    """Extract the e-features of the targets from the recordings and store the
    fitness-calculator configuration through the access point.

    Args:
        access_point: the e-model's access point (targets configuration, settings, paths).
        mapper: a map function (like :func:`map`) for BluePyEfe's per-cell work; functions
            and data it receives are picklable, so a process pool's map works.

    Returns:
        The stored configuration.

    Raises:
        ConfigurationError: a wrong field of the targets configuration or of the settings.
        MissingFileError: recordings that do not exist (all listed).
        ExtractionError: a file that cannot be read, a bad trace, or nothing extracted.
    """
    settings: PipelineSettings = access_point.pipeline_settings
    plan, configuration = plan_extraction(access_point)
    result = run_extraction(plan, mapper)
    check_result(plan, result)
    fitness_configuration = to_fitness_configuration(
        result.efeatures, result.stimuli, result.currents, settings, configuration,
        plan.weights, plan.source,
    )
    if settings.pickle_cells_extraction:
        folder = Path(access_point.state_dir("extraction"))
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in (("cells.pkl", result.cells), ("protocols.pkl", result.protocols)):
            with open(folder / name, "wb") as handle:
                pickle.dump(data, handle)
    if settings.plot_extraction:
        plot_extraction(access_point, result, plan.absolute_amplitude)
    access_point.store_fitness_calculator_configuration(fitness_configuration)
    logger.info("extracted %d e-feature(s) on %d protocol(s)",
                len(fitness_configuration.efeatures), len(fitness_configuration.protocols))
    return fitness_configuration

