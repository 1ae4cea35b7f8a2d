"""Targets configuration: the recordings and the e-feature targets of an extraction.

Stored at ``pipeline_settings.path_extract_config``. Amplitudes are in % of each cell's
rheobase, or in nA with ``extract_absolute_amplitudes``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from luigi_emodel.schemas._base import StrictModel

__all__ = ["TargetConfig", "TargetsConfiguration", "TraceFileConfig"]


class TraceFileConfig(StrictModel):
    """A recording file of one cell, with the eCodes it holds and their metadata."""

    cell_name: str = Field(min_length=1)
    filename: str | None = None
    filepath: str | None = None
    resource_id: str | None = None
    ecodes: dict[str, dict[str, Any]] | None = None
    other_metadata: dict[str, Any] | None = None
    species: str | None = None
    brain_region: str | None = None
    etype: str | None = None
    id: str | None = None

    @model_validator(mode="after")
    def _has_path(self) -> TraceFileConfig:
        if not self.filepath and not self.resource_id:
            raise ValueError("filepath: a recording file needs a 'filepath'")
        return self

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


class TargetConfig(StrictModel):
    """An e-feature to extract on a protocol at an amplitude (± tolerance)."""

    efeature: str = Field(min_length=1)
    protocol: str = Field(min_length=1)
    amplitude: float
    tolerance: float = Field(ge=0)
    efeature_name: str | None = None
    weight: float = 1.0
    # Absent or null: the reference's default, which overrides the pipeline's efel_settings.
    efel_settings: dict[str, Any] = Field(default_factory=lambda: {"strict_stiminterval": True})

    @model_validator(mode="before")
    @classmethod
    def _none_settings(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("efel_settings", {}) is None:
            data = {k: v for k, v in data.items() if k != "efel_settings"}
        return data

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


class TargetsConfiguration(StrictModel):
    """Files and targets of an extraction.

    Example:
        >>> t = TargetsConfiguration.model_validate({"files": [{"cell_name": "c1",
        ...     "filepath": "traces/c1_IDrest_1.ibw", "ecodes": {"IDrest": {}}}],
        ...     "targets": [{"efeature": "Spikecount", "protocol": "IDrest",
        ...                  "amplitude": 150, "tolerance": 20}],
        ...     "protocols_rheobase": ["IDrest"]})
        >>> t.targets[0].amplitude
        150.0
    """

    emodel: str | None = None
    ttype: str | None = None
    files: list[TraceFileConfig] = Field(default_factory=list)
    targets: list[TargetConfig] = Field(default_factory=list)
    protocols_rheobase: list[str] = Field(default_factory=list)
    auto_targets: list[dict[str, Any]] | None = None
    additional_fitness_efeatures: list[dict[str, Any]] | None = None
    additional_fitness_protocols: list[dict[str, Any]] | None = None
    protocols_mapping: dict[str, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _none_lists(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("files", "targets", "protocols_rheobase"):
                if key in data and data[key] is None:
                    data.pop(key)
        return data

    @property
    def protocols(self) -> list[str]:
        """Protocol names the targets use, in first-use order."""
        seen: dict[str, None] = {}
        for target in self.targets:
            seen.setdefault(target.protocol, None)
        return list(seen)

    def as_dict(self) -> dict[str, Any]:
        """As the reference writes it (``emodel`` and ``ttype`` first)."""
        return {
            "emodel": self.emodel,
            "ttype": self.ttype,
            "files": [f.as_dict() for f in self.files],
            "targets": [t.as_dict() for t in self.targets],
            "protocols_rheobase": list(self.protocols_rheobase),
            "auto_targets": self.auto_targets,
            "additional_fitness_efeatures": self.additional_fitness_efeatures,
            "additional_fitness_protocols": self.additional_fitness_protocols,
            "protocols_mapping": self.protocols_mapping,
        }
