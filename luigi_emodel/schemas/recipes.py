"""One entry of recipes.json: where the files of an e-model are and its pipeline settings."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from luigi_emodel.schemas._base import StrictModel

__all__ = ["MORPHOLOGY_EXTENSIONS", "Recipe"]

MORPHOLOGY_EXTENSIONS = (".asc", ".swc", ".ASC", ".SWC")


class Recipe(StrictModel):
    """A recipes.json entry.

    ``params`` and ``parameters`` are two spellings of the model-configuration path; one is
    required. ``pipeline_settings`` is either the settings themselves or the path of a JSON
    file holding them.

    Example:
        >>> r = Recipe.model_validate({"morphology": [["cell", "cell.swc"]],
        ...     "params": "config/params.json", "features": "config/features.json"})
        >>> r.params_path, r.morphology_file
        ('config/params.json', 'cell.swc')
    """

    morph_path: str = "morphology"
    morphology: str | list[tuple[str, str]]
    params: str | None = None
    parameters: str | None = None
    features: str | None = None
    protocol: str | None = None
    final: str | None = None
    # Checked as PipelineSettings by the access point, which knows which file it comes from.
    pipeline_settings: dict[str, Any] | str | None = None
    morph_modifiers: list[Any] | None = None
    multiloc_map: dict[str, list[str]] | None = None
    seclist_names: list[str] | None = None
    secarray_names: list[str] | None = None
    comment: str | None = Field(None, alias="__comment")

    @field_validator("morphology")
    @classmethod
    def _has_morphology_file(
        cls, value: str | list[tuple[str, str]]
    ) -> str | list[tuple[str, str]]:
        files = [value] if isinstance(value, str) else [file for _, file in value]
        if not any(f.endswith(MORPHOLOGY_EXTENSIONS) for f in files):
            raise ValueError(
                f"no morphology file with extension {'/'.join(MORPHOLOGY_EXTENSIONS[:2])} "
                f"in {files}"
            )
        return value

    @model_validator(mode="after")
    def _params_given(self) -> Recipe:
        if self.params is None and self.parameters is None:
            raise ValueError("one of 'params' or 'parameters' (model configuration path) is required")
        return self

    @property
    def params_path(self) -> str:
        """The model-configuration path, whichever key spells it."""
        return self.parameters if self.parameters is not None else str(self.params)

    @property
    def params_key(self) -> str:
        """The recipe key holding the model-configuration path."""
        return "parameters" if self.parameters is not None else "params"

    @property
    def morphology_file(self) -> str:
        """The first morphology file name with a supported extension."""
        if isinstance(self.morphology, str):
            return self.morphology
        for _, file in self.morphology:
            if file.endswith(MORPHOLOGY_EXTENSIONS):
                return file
        raise AssertionError("unreachable: checked by the validator")
