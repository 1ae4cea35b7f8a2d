"""Shared base of the schemas: strict models and error messages that name file and field."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict

from luigi_emodel.exceptions import ConfigurationError

__all__ = ["StrictModel", "format_location", "parse_model", "validation_error"]

ModelT = TypeVar("ModelT", bound=BaseModel)

# A model-level check of a nested model names the field it is about: "filepath: needed".
_FIELD = r"[A-Za-z_]\w*(?:\[\d+\])*"
_FIELD_MESSAGE = re.compile(rf"({_FIELD}(?:\.{_FIELD})*): (.+)")


class StrictModel(BaseModel):
    """A pydantic model that rejects unknown keys and re-validates on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


def format_location(loc: tuple[int | str, ...]) -> str:
    """Turn a pydantic error location into a field path such as ``parameters[3].value``.

    Pydantic adds the name of the union member or validator that failed
    (``function-after[...]``, ``list[float]``, ``tagged-union[...]``); those are noise for a
    user and are dropped.
    """
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        if "[" in part or part in {"float", "int", "str", "bool", "dict", "list", "none"}:
            continue
        path += f".{part}" if path else part
    return path or "(top level)"


def validation_error(
    source: str, error: pydantic.ValidationError, prefix: str = ""
) -> ConfigurationError:
    """A :class:`ConfigurationError` naming ``source`` and every failing field path.

    Errors on the same field path (one per union member) are merged into one line.
    """
    lines: dict[str, str] = {}
    for item in error.errors(include_url=False):
        path = format_location(tuple(item["loc"]))
        message = str(item["msg"])
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if path == "(top level)" and ": " in message:
            # Cross-field checks already name their field paths, one per line.
            for line in message.split("\n"):
                field, _, text = line.partition(": ")
                lines.setdefault(field, text)
            continue
        match = _FIELD_MESSAGE.fullmatch(message)
        if path != "(top level)" and match:
            # Join the nested check's field to the path: files[0].filepath, not files[0].
            path, message = f"{path}.{match.group(1)}", match.group(2)
        # Keep the first (most specific) message per field.
        lines.setdefault(path, message)
    if prefix:
        lines = {
            (prefix if path == "(top level)" else f"{prefix}.{path}" if not path.startswith("[")
             else f"{prefix}{path}"): message
            for path, message in lines.items()
        }
    text = "\n".join(f"{source}: {path}: {message}" for path, message in lines.items())
    return ConfigurationError(text)


def parse_model(
    model: type[ModelT],
    data: Any,
    source: str,
    context: dict[str, Any] | None = None,
    prefix: str = "",
) -> ModelT:
    """Validate ``data`` as ``model``; on failure raise a ConfigurationError naming ``source``.

    Args:
        model: the schema class.
        data: the decoded JSON document (or part of it).
        source: how the user knows the input, usually the file path relative to the run root.
        context: pydantic validation context (e.g. extra section-list names).
        prefix: field path of ``data`` inside the file (e.g. the emodel name in recipes.json).

    Example:
        >>> from luigi_emodel.schemas.metadata import EModelMetadata
        >>> parse_model(EModelMetadata, {"emodel": "L5PC"}, "cli").emodel
        'L5PC'
    """
    try:
        return model.model_validate(data, context=context)
    except pydantic.ValidationError as error:
        raise validation_error(source, error, prefix) from None
