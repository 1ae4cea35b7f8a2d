"""A stored model: one entry of final.json.

Written exactly as the reference writes it (so that BluePyEModel reads it) plus
``threshold_data`` (holding/threshold currents, RMP, Rin found at validation), which the
reference also reads. Read-tolerant of the legacy spellings: ``params`` for ``parameters``,
``githash`` / ``iteration_tag`` for ``iteration``, and string seeds.

Keys this package does not know are kept and written back unchanged: final.json holds
results, and an entry written by another tool must not lose data when we update it.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from luigi_emodel.schemas._base import StrictModel
from luigi_emodel.schemas.metadata import EModelMetadata

__all__ = ["StoredModel", "final_key"]


def final_key(emodel: str, iteration: str | None, seed: int | str) -> str:
    """The final.json key of a model: ``<emodel>__<iteration>__<seed>`` or ``<emodel>__<seed>``."""
    if iteration:
        return f"{emodel}__{iteration}__{seed}"
    return f"{emodel}__{seed}"


class StoredModel(StrictModel):
    """An optimised (and possibly validated) model as stored in final.json.

    Example:
        >>> m = StoredModel.model_validate({"emodel": "cell", "seed": "3", "score": 1.5,
        ...     "params": {"g_pas.all": 1e-5}, "githash": "abc"})
        >>> m.seed, m.iteration, m.parameters
        (3, 'abc', {'g_pas.all': 1e-05})
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    emodel: str
    etype: str | None = None
    ttype: str | None = None
    mtype: str | None = None
    species: str | None = None
    brain_region: str | None = None
    iteration: str | None = None
    synapse_class: str | None = None
    allen_notation: str | None = None
    score: float | None = None
    parameters: dict[str, float] = Field(default_factory=dict)
    fitness: dict[str, float | None] = Field(default_factory=dict)
    features: dict[str, float | None] = Field(default_factory=dict)
    validation_fitness: dict[str, float | None] = Field(default_factory=dict)
    validated: bool | None = None
    seed: int
    pdfs: list[Any] | dict[str, Any] = Field(default_factory=list)
    threshold_data: dict[str, float | None] | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_spellings(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "params" in data:
            params = data.pop("params")
            data.setdefault("parameters", params)
        for old in ("githash", "iteration_tag"):
            if old in data:
                value = data.pop(old)
                if data.get("iteration") is None:
                    data["iteration"] = value
        for key in ("features", "fitness", "validation_fitness", "parameters"):
            if data.get(key) is None:
                data.pop(key, None)
        for key in ("etype", "ttype", "mtype", "species", "brain_region", "iteration",
                    "synapse_class", "allen_notation"):
            if data.get(key) == "None":
                data[key] = None
        return data

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected an integer seed")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"expected an integer seed, got {value!r}") from None
        return value

    @classmethod
    def from_result(
        cls,
        metadata: EModelMetadata,
        seed: int,
        parameters: dict[str, float],
        fitness: dict[str, float],
        **fields: Any,
    ) -> StoredModel:
        """A new entry for ``metadata`` and ``seed``; ``score`` is the sum of ``fitness``."""
        score = float(sum(v for v in fitness.values() if v is not None))
        return cls(
            **metadata.as_dict(),
            allen_notation=metadata.allen_notation,
            seed=int(seed),
            parameters=dict(parameters),
            fitness=dict(fitness),
            score=score,
            **fields,
        )

    @property
    def key(self) -> str:
        """This entry's final.json key."""
        return final_key(self.emodel, self.iteration, self.seed)

    def metadata_dict(self) -> dict[str, Any]:
        """The metadata fields, as in :meth:`EModelMetadata.as_dict`."""
        return {
            key: getattr(self, key)
            for key in ("emodel", "etype", "ttype", "mtype", "species", "brain_region",
                        "iteration", "synapse_class")
        }

    def as_dict(self) -> dict[str, Any]:
        """The entry as written into final.json (reference key order, extras kept)."""
        data = self.metadata_dict()
        data["allen_notation"] = self.allen_notation
        data.update({
            "score": self.score,
            "parameters": dict(self.parameters),
            "fitness": dict(self.fitness),
            "features": dict(self.features),
            "validation_fitness": dict(self.validation_fitness),
            "validated": self.validated,
            "seed": self.seed,
            "pdfs": self.pdfs,
        })
        if self.threshold_data is not None:
            data["threshold_data"] = dict(self.threshold_data)
        data.update(self.model_extra or {})
        return data

    @property
    def finite_fitness(self) -> dict[str, float]:
        """Objective scores with missing or NaN values dropped."""
        return {
            k: float(v) for k, v in self.fitness.items()
            if v is not None and not math.isnan(float(v))
        }
