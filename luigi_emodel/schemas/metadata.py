"""The metadata that identifies an e-model: its name, types, species, region and iteration."""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator, model_validator

from luigi_emodel.schemas._base import StrictModel

__all__ = ["NEURON_NAME", "SAFE_TAG", "EModelMetadata", "none_if_none_string"]

#: A NEURON template name: the emodel becomes the hoc template of the exported cell.
NEURON_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: An iteration tag becomes a folder name (run/<tag>, checkpoints/<emodel>/<tag>).
SAFE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
# Longest emodel name or tag we accept: file names are limited to 255 bytes and several
# of these go into one file name.
MAX_NAME_LENGTH = 100
MAX_VALUE_LENGTH = 200

_AS_STRING_KEYS = ("emodel", "etype", "ttype", "mtype", "species", "brain_region", "iteration")


def _too_long(value: str, limit: int) -> str:
    # Echoing a name of thousands of characters would bury the message: show its start.
    return f"{value[:20]!r}... is {len(value)} characters long; at most {limit} are allowed"


def none_if_none_string(value: Any) -> Any:
    """Luigi spells a missing parameter as the string ``"None"``; read it as None."""
    if value == "None" or value == "":
        return None
    return value


class EModelMetadata(StrictModel):
    """Metadata of an e-model; the tuple (emodel, ..., iteration_tag) identifies one.

    ``etype``, ``ttype``, ``mtype`` and ``brain_region`` given on a command line may spell
    spaces as ``__``; they are stored with spaces.

    Example:
        >>> m = EModelMetadata(emodel="L5PC", etype="cADpyr", mtype="L5TPC:A",
        ...                    species="rat", brain_region="SSCX", iteration_tag="abc")
        >>> m.as_string(seed=1)
        'emodel=L5PC__etype=cADpyr__mtype=L5TPC_A__species=rat__brain_region=SSCX__iteration=abc__seed=1'
    """

    emodel: str
    etype: str | None = None
    ttype: str | None = None
    mtype: str | None = None
    species: str | None = None
    brain_region: str | None = None
    iteration_tag: str | None = None
    synapse_class: str | None = None
    allen_notation: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _none_strings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "iteration" in data and "iteration_tag" not in data:
                data["iteration_tag"] = data.pop("iteration")
            for key, value in list(data.items()):
                if key != "emodel":
                    data[key] = none_if_none_string(value)
        return data

    @field_validator("emodel")
    @classmethod
    def _neuron_name(cls, value: str) -> str:
        if len(value) > MAX_NAME_LENGTH:
            raise ValueError(_too_long(value, MAX_NAME_LENGTH))
        if not NEURON_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid NEURON template name: expected a letter followed "
                f"by letters, digits or '_' (at most {MAX_NAME_LENGTH} characters)"
            )
        return value

    @field_validator("iteration_tag")
    @classmethod
    def _safe_tag(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > MAX_NAME_LENGTH:
            raise ValueError(_too_long(value, MAX_NAME_LENGTH))
        if not SAFE_TAG.fullmatch(value) or value in {".", ".."}:
            raise ValueError(
                f"{value!r} is not a valid iteration tag: expected letters, digits, '_', '.', "
                f"'+' or '-', not starting with '.' (at most {MAX_NAME_LENGTH} characters)"
            )
        return value

    @field_validator("etype", "ttype", "mtype", "species", "brain_region", "synapse_class",
                     "allen_notation")
    @classmethod
    def _plain_value(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > MAX_VALUE_LENGTH:
            raise ValueError(_too_long(value, MAX_VALUE_LENGTH))
        if "\x00" in value or "\n" in value:
            raise ValueError(
                f"{value[:40]!r} contains a NUL or a line break: expected a single line of text"
            )
        return value.replace("__", " ")

    @property
    def iteration(self) -> str | None:
        """The iteration tag under the name the reference's final.json uses."""
        return self.iteration_tag

    def as_string(self, seed: int | str | None = None, use_allen_notation: bool = True) -> str:
        """The name used for checkpoints, figures and exports.

        Keys in a fixed order, falsy values skipped, ``/`` stripped, ``:`` and spaces replaced
        by ``_``; the seed last when given (``0`` included).
        """
        parts = []
        for key in _AS_STRING_KEYS:
            value = getattr(self, key)
            if key == "brain_region" and use_allen_notation and self.allen_notation:
                value = self.allen_notation
            if value:
                parts.append(f"{key}={str(value).replace('/', '')}")
        if seed is not None and seed != "None":
            parts.append(f"seed={seed}")
        return "__".join(parts).replace(":", "_").replace(" ", "_")

    def as_dict(self) -> dict[str, Any]:
        """The metadata as stored in a final.json entry (``iteration``, not ``iteration_tag``)."""
        return {
            "emodel": self.emodel,
            "etype": self.etype,
            "ttype": self.ttype,
            "mtype": self.mtype,
            "species": self.species,
            "brain_region": self.brain_region,
            "iteration": self.iteration_tag,
            "synapse_class": self.synapse_class,
        }

    def filters(self) -> dict[str, str]:
        """The non-empty metadata fields, for matching stored models."""
        return {k: v for k, v in self.as_dict().items() if v is not None}
