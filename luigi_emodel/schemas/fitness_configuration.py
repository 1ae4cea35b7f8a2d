"""Fitness-calculator configuration (the recipe's ``features`` file): efeatures + protocols.

The new format is one file ``{"efeatures": [...], "protocols": [...]}``. The legacy format
is a pair of files keyed by protocol name: features ``{protocol: {"soma.v": [{"feature",
"val": [mean, std]}]}}`` and protocols ``{protocol: {"stimuli": {"step": {...},
"holding": {...}}}}``; :func:`from_legacy` converts the pair.

An objective's name is ``<protocol_name>.<recording_name>.<efeature_name or
efel_feature_name>``; these names key ``fitness``, ``features`` and ``validation_fitness``
in final.json.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import Field, model_validator

from luigi_emodel.schemas._base import StrictModel

__all__ = [
    "LEGACY_PRE_PROTOCOLS",
    "PRE_PROTOCOLS",
    "EFeatureConfig",
    "FitnessCalculatorConfiguration",
    "ProtocolConfig",
    "RecordingConfig",
    "from_legacy",
    "same_protocol",
]

#: Protocols run before the others in threshold-based evaluations.
PRE_PROTOCOLS = ("SearchHoldingCurrent", "SearchThresholdCurrent", "RMPProtocol", "RinProtocol")
#: Protocol names of the legacy format that describe pre-protocols, not protocols to run.
LEGACY_PRE_PROTOCOLS = ("RMP", "Rin", "RinHoldcurrent", "RinHoldCurrent", "Main",
                        "ThresholdDetection", "Threshold")


def same_protocol(name: str | list[Any] | tuple[Any, ...], other: str) -> bool:
    """True if ``name`` (``"IV_-20"`` or ``["IV", -20]``) designates protocol ``other``."""
    if isinstance(name, (list, tuple)):
        name = f"{name[0]}_{name[1]}"
    if name == other:
        return True
    base, _, amp = name.rpartition("_")
    obase, _, oamp = other.rpartition("_")
    try:
        return bool(base) and base == obase and float(amp) == float(oamp)
    except ValueError:
        return False


class RecordingConfig(StrictModel):
    """A recording of a protocol: ``<protocol>.<location>.<variable>``."""

    type: str = "CompRecording"
    name: str
    location: str
    variable: str = "v"
    # Morphology-dependent recordings (e.g. at a distance along the apical tree).
    comp_x: float | None = None
    sec_name: str | None = None
    sec_index: int | None = None
    seclist_name: str | None = None
    somadistance: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _var(cls, data: Any) -> Any:
        if isinstance(data, dict) and "var" in data:
            data = dict(data)
            data.setdefault("variable", data.pop("var"))
        return data

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ProtocolConfig(StrictModel):
    """A protocol: stimuli (step, holding), recordings, validation flag and type."""

    name: str = Field(min_length=1)
    stimuli: list[dict[str, Any]]
    recordings_from_config: list[RecordingConfig]
    validation: bool = False
    protocol_type: Literal["ThresholdBasedProtocol", "Protocol"] = "ThresholdBasedProtocol"
    stochasticity: bool = False

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "recordings" in data:
                recordings = data.pop("recordings")
                data.setdefault("recordings_from_config", recordings)
            if isinstance(data.get("stimuli"), dict):
                data["stimuli"] = [data["stimuli"]]
            if isinstance(data.get("recordings_from_config"), dict):
                data["recordings_from_config"] = [data["recordings_from_config"]]
        return data

    @property
    def recording_names(self) -> list[str]:
        """Recording names without the protocol prefix, e.g. ``soma.v``."""
        prefix = f"{self.name}."
        return [
            r.name[len(prefix) :] if r.name.startswith(prefix) else r.name
            for r in self.recordings_from_config
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stimuli": copy.deepcopy(self.stimuli),
            "recordings_from_config": [r.as_dict() for r in self.recordings_from_config],
            "validation": self.validation,
            "protocol_type": self.protocol_type,
            "stochasticity": self.stochasticity,
        }


class EFeatureConfig(StrictModel):
    """One e-feature target: eFEL feature on a protocol's recording, with mean and std."""

    efel_feature_name: str = Field(min_length=1)
    protocol_name: str = Field(min_length=1)
    recording_name: str | dict[str, str]
    mean: float
    original_std: float | None = None
    efeature_name: str | None = None
    weight: float = 1.0
    sample_size: int | None = None
    threshold_efeature_std: float | None = None
    default_std_value: float = 1e-3
    efel_settings: dict[str, Any] = Field(default_factory=lambda: {"strict_stiminterval": True})

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "std" in data:
                std = data.pop("std")
                if data.get("original_std") is None:
                    data["original_std"] = std
            if data.get("efel_settings") is None:
                data.pop("efel_settings", None)
            if data.get("default_std_value") is None:
                data.pop("default_std_value", None)
        return data

    @property
    def name(self) -> str:
        """The objective name, e.g. ``IDrest_150.soma.v.Spikecount``."""
        feature = self.efeature_name or self.efel_feature_name
        recording = (
            self.recording_name[""] if isinstance(self.recording_name, dict)
            else self.recording_name
        )
        return f"{self.protocol_name}.{recording}.{feature}"

    @property
    def std(self) -> float:
        """The std used for scoring: floored at ``threshold_efeature_std`` × |mean| if set,
        and never zero (``default_std_value`` replaces a zero or missing std)."""
        std = self.original_std
        if self.threshold_efeature_std is not None:
            if self.mean == 0.0:
                std = self.threshold_efeature_std or self.default_std_value
            else:
                limit = abs(self.threshold_efeature_std * self.mean)
                std = limit if std is None or std < limit else std
        if not std:
            return self.default_std_value
        return float(std)

    def as_dict(self) -> dict[str, Any]:
        return {
            "efel_feature_name": self.efel_feature_name,
            "protocol_name": self.protocol_name,
            "recording_name": self.recording_name,
            "threshold_efeature_std": self.threshold_efeature_std,
            "default_std_value": self.default_std_value,
            "mean": self.mean,
            "original_std": self.original_std,
            "sample_size": self.sample_size,
            "efeature_name": self.efeature_name,
            "weight": self.weight,
            "efel_settings": copy.deepcopy(self.efel_settings),
        }


class FitnessCalculatorConfiguration(StrictModel):
    """Efeatures and protocols that define the objectives of an optimisation.

    Example:
        >>> config = FitnessCalculatorConfiguration.model_validate({
        ...     "protocols": [{"name": "Step_1", "protocol_type": "Protocol",
        ...                    "stimuli": [{"delay": 100, "amp": 0.1, "duration": 500,
        ...                                 "totduration": 700, "holding_current": 0.0}],
        ...                    "recordings_from_config": [{"type": "CompRecording",
        ...                        "name": "Step_1.soma.v", "location": "soma", "variable": "v"}]}],
        ...     "efeatures": [{"efel_feature_name": "Spikecount", "protocol_name": "Step_1",
        ...                    "recording_name": "soma.v", "mean": 5, "original_std": 1}]})
        >>> config.objective_names
        ['Step_1.soma.v.Spikecount']
    """

    efeatures: list[EFeatureConfig] = Field(default_factory=list)
    protocols: list[ProtocolConfig] = Field(default_factory=list)
    # Accepted for files that carry them; the pipeline settings are authoritative.
    name_rmp_protocol: str | list[Any] | None = None
    name_rin_protocol: str | list[Any] | None = None
    threshold_efeature_std: float | None = None
    default_std_value: float | None = None
    validation_protocols: list[str] | None = None
    stochasticity: bool | list[str] | None = None

    @model_validator(mode="after")
    def _features_match_protocols(self) -> FitnessCalculatorConfiguration:
        problems = []
        protocols = {p.name: p for p in self.protocols}
        names = [p.name for p in self.protocols]
        for index, name in enumerate(names):
            if names.index(name) != index:
                problems.append(f"protocols[{index}].name: duplicate protocol {name!r}")
        for index, feature in enumerate(self.efeatures):
            if feature.protocol_name in PRE_PROTOCOLS:
                continue
            protocol = protocols.get(feature.protocol_name)
            if protocol is None:
                problems.append(
                    f"efeatures[{index}].protocol_name: no protocol named "
                    f"{feature.protocol_name!r} (protocols: {sorted(protocols)})"
                )
                continue
            recording = feature.recording_name
            recordings = [recording] if isinstance(recording, str) else list(recording.values())
            for rec in recordings:
                if rec not in protocol.recording_names:
                    problems.append(
                        f"efeatures[{index}].recording_name: {rec!r} is not a recording of "
                        f"protocol {protocol.name!r} (it has {protocol.recording_names})"
                    )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def objective_names(self) -> list[str]:
        """Objective names in file order."""
        return [f.name for f in self.efeatures]

    @property
    def is_threshold_based(self) -> bool:
        """True when any protocol's amplitudes are relative to the threshold current."""
        return any(p.protocol_type == "ThresholdBasedProtocol" for p in self.protocols)

    def as_dict(self) -> dict[str, Any]:
        """The new format as the reference writes it (``efeatures`` and ``protocols``)."""
        return {
            "efeatures": [f.as_dict() for f in self.efeatures],
            "protocols": [p.as_dict() for p in self.protocols],
        }


def _legacy_recording_name(recording: str) -> str:
    return "soma.v" if recording == "soma" else recording


def from_legacy(
    features: dict[str, Any],
    protocols: dict[str, Any],
    *,
    validation_protocols: list[str] | None = None,
    threshold_efeature_std: float | None = None,
    default_std_value: float = 1e-3,
    stochasticity: bool | list[str] = False,
) -> dict[str, Any]:
    """Convert a legacy features + protocols pair into the new format (a plain dict).

    Pre-protocol sections (``RMP``, ``Rin``, ``RinHoldCurrent``, ``Threshold``) are mapped onto
    the pre-protocols as the reference does. Shapes are checked with messages naming the
    protocol and recording; the returned dict is validated by the caller.
    """
    validation_protocols = validation_protocols or []
    out_protocols: list[dict[str, Any]] = []
    for name, protocol in protocols.items():
        if name in PRE_PROTOCOLS or name in LEGACY_PRE_PROTOCOLS:
            continue
        if not isinstance(protocol, dict) or "stimuli" not in protocol:
            raise ValueError(f"{name}: expected {{'stimuli': {{'step': ..., 'holding': ...}}}}")
        stimuli = protocol["stimuli"]
        if not isinstance(stimuli, dict) or "step" not in stimuli:
            raise ValueError(f"{name}.stimuli: expected a 'step' stimulus")
        stimulus = copy.deepcopy(stimuli["step"])
        stimulus["holding_current"] = stimuli.get("holding", {}).get("amp")
        recordings: list[dict[str, Any]] = [
            {"type": "CompRecording", "name": f"{name}.soma.v", "location": "soma",
             "variable": "v"}
        ]
        for extra in protocol.get("extra_recordings", []):
            extra = copy.deepcopy(extra)
            variable = extra.pop("var", extra.get("variable", "v"))
            extra["variable"] = variable
            extra["name"] = f"{name}.{extra['name']}.{variable}"
            recordings.append(extra)
        if isinstance(stochasticity, list):
            stochastic = name in stochasticity
        else:
            stochastic = bool(stochasticity)
        out_protocols.append({
            "name": name,
            "stimuli": [stimulus],
            "recordings_from_config": recordings,
            "validation": any(same_protocol(v, name) for v in validation_protocols),
            "protocol_type": (
                "ThresholdBasedProtocol" if protocol.get("type") == "StepThresholdProtocol"
                else "Protocol"
            ),
            "stochasticity": stochastic,
        })
    known = {p["name"] for p in out_protocols}
    out_features: list[dict[str, Any]] = []
    for protocol_name, by_recording in features.items():
        if not isinstance(by_recording, dict):
            raise ValueError(f"{protocol_name}: expected {{recording: [features]}}")
        for recording, feature_list in by_recording.items():
            if not isinstance(feature_list, list):
                raise ValueError(f"{protocol_name}.{recording}: expected a list of features")
            for index, feature in enumerate(feature_list):
                where = f"{protocol_name}.{recording}[{index}]"
                if not isinstance(feature, dict) or "feature" not in feature or "val" not in feature:
                    raise ValueError(f"{where}: expected {{'feature': name, 'val': [mean, std]}}")
                val = feature["val"]
                if not isinstance(val, (list, tuple)) or len(val) != 2:
                    raise ValueError(f"{where}.val: expected [mean, std]")
                efel_name = feature["feature"]
                target = protocol_name
                if protocol_name == "Rin":
                    if efel_name == "ohmic_input_resistance_vb_ssse":
                        target = "RinProtocol"
                    elif efel_name == "voltage_base":
                        target, efel_name = "SearchHoldingCurrent", "steady_state_voltage_stimend"
                    else:
                        continue
                elif protocol_name == "RMP":
                    if efel_name == "voltage_base":
                        target, efel_name = "RMPProtocol", "steady_state_voltage_stimend"
                    elif efel_name == "Spikecount":
                        target = "RMPProtocol"
                    else:
                        continue
                elif protocol_name in ("RinHoldCurrent", "RinHoldcurrent"):
                    target = "SearchHoldingCurrent"
                elif protocol_name == "Threshold":
                    target = "SearchThresholdCurrent"
                elif protocol_name not in known:
                    raise ValueError(
                        f"{where}: features for protocol {protocol_name!r}, which the protocols "
                        f"file does not define"
                    )
                out_features.append({
                    "efel_feature_name": efel_name,
                    "protocol_name": target,
                    "recording_name": _legacy_recording_name(recording),
                    "mean": val[0],
                    "original_std": val[1],
                    "efeature_name": feature.get("efeature_name"),
                    "efel_settings": feature.get("efel_settings", {}),
                    "threshold_efeature_std": threshold_efeature_std,
                    "default_std_value": default_std_value,
                    "weight": feature.get("weight", 1.0),
                })
    used = {f["protocol_name"] for f in out_features}
    return {
        "efeatures": out_features,
        "protocols": [p for p in out_protocols if p["name"] in used],
    }
