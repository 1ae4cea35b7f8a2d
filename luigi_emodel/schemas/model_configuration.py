"""Model configuration (the recipe's ``params`` file): mechanisms, distributions, parameters.

Two on-disk formats load into the same :class:`ModelConfiguration`:

* legacy: ``mechanisms`` is a dict ``{location: {"mech": [names]}}``, ``distributions`` a dict
  ``{name: {"fun": ...}}``, ``parameters`` a dict ``{location: [{"name", "val", "dist"}]}``;
* new: lists of ``{"name", "location", ...}`` mechanisms, distributions and parameters.

:meth:`ModelConfiguration.as_dict` writes the new format. A parameter's distribution is
written under both ``distribution`` and ``dist`` and read from either: the reference writes
the former but reads only the latter, so its own files lose their distributions; ours keep them
for both readers. For the same reason :meth:`ModelConfiguration.as_dict` declares the implicit
``uniform`` distribution (the reference refuses a file whose list lacks it while a parameter
uses it), and the reader drops that declaration again.

Validation context (``parse_model(..., context={"locations": [...]})``) may add section-list
names to the known locations (from the recipe's ``seclist_names`` and ``multiloc_map``).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from luigi_emodel.schemas._base import StrictModel

__all__ = [
    "BASE_LOCATIONS",
    "GLOBAL_PARAMETERS",
    "LOCATION_ALIASES",
    "SECTION_PARAMETERS",
    "DistributionConfig",
    "MechanismConfig",
    "ModelConfiguration",
    "MorphologyConfig",
    "ParameterConfig",
    "expand_location",
    "in_legacy_terms",
    "legacy_field_paths",
]

#: Section lists of a morphology as BluePyOpt names them.
BASE_LOCATIONS = ("somatic", "axonal", "basal", "apical", "myelinated")
#: Multi-location names and the section lists they stand for.
LOCATION_ALIASES: dict[str, tuple[str, ...]] = {
    "all": BASE_LOCATIONS,
    "alldend": ("apical", "basal"),
    "somadend": ("apical", "basal", "somatic"),
    "allnoaxon": ("apical", "basal", "somatic"),
    "somaxon": ("axonal", "somatic"),
    "allact": ("apical", "basal", "somatic", "axonal"),
}
#: Parameters set on the simulator, not on sections.
GLOBAL_PARAMETERS = ("v_init", "celsius")
#: Section properties and reversal potentials that belong to no mechanism.
SECTION_PARAMETERS = ("cm", "Ra", "ena", "ek", "eca", "eh", "e_pas_unused")
_NO_MECHANISM = re.compile(r"^(cm|Ra|e[a-z]+|[a-z]+_ion.*|.*_ion)$")
_DISTRIBUTION_LOCATION = "distribution_"


def expand_location(location: str, extra: dict[str, list[str]] | None = None) -> set[str]:
    """The section lists a location stands for (``alldend`` -> {apical, basal})."""
    if extra and location in extra:
        return {sub for name in extra[location] for sub in expand_location(name)}
    return set(LOCATION_ALIASES.get(location, (location,)))


class MechanismConfig(StrictModel):
    """A mechanism (a .mod SUFFIX or a NEURON built-in) inserted at one location."""

    name: str = Field(min_length=1)
    location: str | None = None  # None for an available, not yet placed, mechanism
    stochastic: bool | None = None
    version: str | None = None
    temperature: float | None = None
    ljp_corrected: bool | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    ion_currents: list[str] | None = None
    nonspecific_currents: list[str] | None = None
    ionic_concentrations: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class DistributionConfig(StrictModel):
    """A spatial distribution: a Python expression of ``{distance}``, ``{value}`` and params."""

    name: str = Field(min_length=1)
    function: str | None = None
    parameters: list[str] = Field(default_factory=list)
    morphology_dependent_parameters: list[str] = Field(default_factory=list)
    soma_ref_location: float = Field(0.5, ge=0.0, le=1.0)
    comment: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "fun" in data and "function" not in data:
                data["function"] = data.pop("fun")
            # Legacy files annotate a distribution as they annotate the parameters.
            if "__comment" in data and "comment" not in data:
                data["comment"] = data.pop("__comment")
            misplaced = data.get("morphology_dependent_parameters")
            if isinstance(misplaced, (int, float)) and not isinstance(misplaced, bool):
                # The reference reads soma_ref_location into this (unused) field and writes
                # it back there; recover it rather than refuse the reference's own files.
                data.pop("morphology_dependent_parameters")
                if data.get("soma_ref_location") in (None, 0.5):
                    data["soma_ref_location"] = misplaced
            for key in ("parameters", "morphology_dependent_parameters"):
                if isinstance(data.get(key), str):
                    data[key] = [data[key]]
                elif data.get(key) is None:
                    data.pop(key, None)
            if data.get("soma_ref_location") is None:
                data.pop("soma_ref_location", None)
        return data

    @model_validator(mode="after")
    def _function_has_value(self) -> DistributionConfig:
        if self.name != "uniform" and self.function is not None and "{value}" not in self.function:
            raise ValueError(f"distribution {self.name!r}: function must use '{{value}}'")
        return self

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "function": self.function}
        # The reference reads this key into morphology_dependent_parameters: written only
        # when it differs from the default both readers assume.
        if self.soma_ref_location != 0.5:
            data["soma_ref_location"] = self.soma_ref_location
        for key in ("parameters", "morphology_dependent_parameters", "comment"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        return data


class ParameterConfig(StrictModel):
    """A parameter at a location: frozen (a number) or free (``[low, high]``)."""

    name: str = Field(min_length=1)
    value: float | tuple[float, float]
    location: str = Field(min_length=1)
    distribution: str = "uniform"
    mechanism: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "dist" in data:
                dist = data.pop("dist")
                data.setdefault("distribution", dist)
            if data.get("distribution") in (None, "constant"):
                data["distribution"] = "uniform"
        return data

    @field_validator("value", mode="before")
    @classmethod
    def _number_or_bounds(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected [low, high] or a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, (list, tuple)):
            if len(value) == 1 and isinstance(value[0], (int, float)):
                return float(value[0])
            if len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
            ):
                low, high = float(value[0]), float(value[1])
                if low > high:
                    raise ValueError(f"bounds [low, high] with low > high: [{low}, {high}]")
                return (low, high)
        raise ValueError("expected [low, high] or a number")

    @property
    def is_free(self) -> bool:
        """True for a parameter to optimise (given as bounds)."""
        return isinstance(self.value, tuple)

    @property
    def full_name(self) -> str:
        """``<name>.<location>`` (bare ``<name>`` for globals): the key in final.json."""
        if self.location == "global":
            return self.name
        return f"{self.name}.{self.location}"

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "value": list(self.value) if isinstance(self.value, tuple) else self.value,
            "location": self.location,
        }
        if self.distribution != "uniform":
            # "dist" is the only spelling the reference reads; "distribution" the one it writes.
            data["distribution"] = self.distribution
            data["dist"] = self.distribution
        if self.mechanism:
            data["mechanism"] = self.mechanism
        return data


class MorphologyConfig(StrictModel):
    """The morphology of the model, as recorded in the new format."""

    name: str | None = None
    format: str | None = None
    path: str | None = None
    seclist_names: list[str] | None = None
    secarray_names: list[str] | None = None
    section_index: Any = None
    id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


def legacy_field_paths(data: Any) -> dict[str, str]:
    """For a legacy-format file, the field path of each converted list item as the user wrote
    it: ``parameters[3]`` -> ``parameters.somatic[0]``, ``mechanisms[2]`` ->
    ``mechanisms.somatic.mech[1]`` (empty for the new format or a malformed file).

    Example:
        >>> legacy_field_paths({"mechanisms": {"all": {"mech": ["pas"]}},
        ...                     "parameters": {"global": [{"name": "v_init", "val": -70}],
        ...                                    "all": [{"name": "g_pas", "val": [0, 1]}]}})
        {'mechanisms[0]': 'mechanisms.all.mech[0]', 'parameters[0]': 'parameters.global[0]', \
'parameters[1]': 'parameters.all[0]'}
    """
    paths: dict[str, str] = {}
    if not isinstance(data, dict) or not isinstance(data.get("mechanisms"), dict):
        return paths
    index = 0
    for location, entry in data["mechanisms"].items():
        names = entry.get("mech", []) if isinstance(entry, dict) else []
        for position in range(len(names) if isinstance(names, list) else 0):
            paths[f"mechanisms[{index}]"] = f"mechanisms.{location}.mech[{position}]"
            index += 1
    index = 0
    parameters = data.get("parameters")
    for location, entries in (parameters.items() if isinstance(parameters, dict) else ()):
        if location == "__comment" or not isinstance(entries, list):
            continue
        for position in range(len(entries)):
            paths[f"parameters[{index}]"] = f"parameters.{location}[{position}]"
            index += 1
    return paths


def in_legacy_terms(message: str, paths: dict[str, str]) -> str:
    """``message`` with converted field paths replaced by the legacy ones of ``paths``
    (``parameters[3].value`` -> ``parameters.somatic[0].val``)."""
    def replace(match: re.Match[str]) -> str:
        legacy = paths.get(match.group(1))
        if legacy is None:
            return match.group(0)
        rest = match.group(2) or ""
        if rest == ".value" and legacy.startswith("parameters."):
            rest = ".val"
        elif rest == ".distribution" and legacy.startswith("parameters."):
            rest = ".dist"
        return legacy + rest

    return re.sub(r"((?:parameters|mechanisms)\[\d+\])(\.[A-Za-z_]+)?", replace, message)


def _legacy_to_new(data: dict[str, Any]) -> dict[str, Any]:
    """Convert the legacy dict format to the list format (no checks beyond shapes)."""
    mechanisms_in = data.get("mechanisms", {})
    mechanisms = []
    for location, entry in mechanisms_in.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("mech", []), list):
            raise ValueError(
                f"mechanisms.{location}: expected {{'mech': [names]}} in the legacy format"
            )
        for name in entry.get("mech", []):
            mechanisms.append({"name": name, "location": location})
    distributions = []
    for name, entry in (data.get("distributions") or {}).items():
        if not isinstance(entry, dict):
            raise ValueError(f"distributions.{name}: expected {{'fun': expression}}")
        distributions.append({"name": name, **entry})
    parameters = []
    params_in = data.get("parameters", {})
    if not isinstance(params_in, dict):
        raise ValueError("parameters: the legacy format expects {location: [parameters]}")
    for location, entries in params_in.items():
        if location == "__comment":
            continue
        if not isinstance(entries, list):
            raise ValueError(f"parameters.{location}: expected a list of parameters")
        for entry in entries:
            if not isinstance(entry, dict):
                raise ValueError(f"parameters.{location}: expected {{'name', 'val'}} objects")
            entry = dict(entry)
            if "val" in entry:
                entry["value"] = entry.pop("val")
            parameters.append({**entry, "location": location})
    out: dict[str, Any] = {
        "mechanisms": mechanisms,
        "distributions": distributions,
        "parameters": parameters,
    }
    extra = set(data) - {"mechanisms", "distributions", "parameters", "__comment"}
    for key in extra:
        out[key] = data[key]
    return out


def _is_implicit_uniform(entry: Any) -> bool:
    """True for a ``uniform`` distribution declared with nothing but defaults."""
    return (
        isinstance(entry, dict)
        and entry.get("name") == "uniform"
        and entry.get("function") is None
        and not entry.get("parameters")
        and entry.get("soma_ref_location", 0.5) in (None, 0.5)
        and not entry.get("comment")
    )


class ModelConfiguration(StrictModel):
    """The whole model configuration: mechanisms, distributions, parameters and morphology.

    Example:
        >>> config = ModelConfiguration.model_validate({
        ...     "mechanisms": {"all": {"mech": ["pas"]}},
        ...     "distributions": {},
        ...     "parameters": {"global": [{"name": "v_init", "val": -70}],
        ...                    "all": [{"name": "g_pas", "val": [1e-5, 1e-4]}]}})
        >>> [p.full_name for p in config.free_parameters]
        ['g_pas.all']
        >>> config.parameters[1].mechanism
        'pas'
    """

    mechanisms: list[MechanismConfig] = Field(default_factory=list)
    distributions: list[DistributionConfig] = Field(default_factory=list)
    parameters: list[ParameterConfig] = Field(default_factory=list)
    morphology: MorphologyConfig = Field(default_factory=MorphologyConfig)
    morph_modifiers: list[Any] | None = None
    extra_mech_ids: list[Any] | None = None
    comment: str | None = Field(None, alias="__comment")

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("morphology", {}) is None:
            data = {k: v for k, v in data.items() if k != "morphology"}
        if isinstance(data, dict) and isinstance(data.get("mechanisms"), dict):
            data = _legacy_to_new(data)
        if isinstance(data, dict) and isinstance(data.get("distributions"), dict):
            data = dict(data)
            data["distributions"] = [
                {"name": k, **v} for k, v in data["distributions"].items() if isinstance(v, dict)
            ]
        if isinstance(data, dict) and isinstance(data.get("distributions"), list):
            # The declared default (as_dict and the reference write it) is implicit here.
            data = dict(data)
            data["distributions"] = [
                d for d in data["distributions"] if not _is_implicit_uniform(d)
            ]
        return data

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ModelConfiguration:
        context = info.context or {}
        multiloc: dict[str, list[str]] = dict(context.get("multiloc_map") or {})
        known_locations = (
            set(BASE_LOCATIONS)
            | set(LOCATION_ALIASES)
            | set(context.get("locations") or ())
            | set(multiloc)
        )
        distribution_names = {d.name for d in self.distributions} | {"uniform"}
        distributions = {d.name: d for d in self.distributions}
        problems: list[str] = []
        for index, mechanism in enumerate(self.mechanisms):
            if mechanism.location not in known_locations:
                problems.append(
                    f"mechanisms[{index}].location: unknown location {mechanism.location!r}; "
                    f"expected one of {sorted(known_locations)}"
                )
        inserted: dict[str, set[str]] = {}
        for mechanism in self.mechanisms:
            if mechanism.location is None:
                continue
            inserted.setdefault(mechanism.name, set()).update(
                expand_location(mechanism.location, multiloc)
            )
        mechanism_names = sorted(inserted, key=len, reverse=True)
        for index, param in enumerate(self.parameters):
            where = f"parameters[{index}]"
            location = param.location
            is_distribution_param = location.startswith(_DISTRIBUTION_LOCATION)
            if is_distribution_param:
                dist_name = location[len(_DISTRIBUTION_LOCATION) :]
                if dist_name not in distributions:
                    problems.append(
                        f"{where}.location: {location!r} refers to unknown distribution "
                        f"{dist_name!r}"
                    )
                elif param.name not in distributions[dist_name].parameters:
                    problems.append(
                        f"{where}.name: {param.name!r} is not a parameter of distribution "
                        f"{dist_name!r} (it has {distributions[dist_name].parameters})"
                    )
                continue
            if location == "global":
                if param.name not in GLOBAL_PARAMETERS:
                    problems.append(
                        f"{where}.name: {param.name!r} cannot be global; expected one of "
                        f"{list(GLOBAL_PARAMETERS)}"
                    )
                continue
            if location not in known_locations:
                problems.append(
                    f"{where}.location: unknown location {location!r}; expected one of "
                    f"{sorted(known_locations | {'global'})} or 'distribution_<name>'"
                )
                continue
            if param.distribution not in distribution_names:
                problems.append(
                    f"{where}.distribution: unknown distribution {param.distribution!r}; "
                    f"defined: {sorted(distribution_names)}"
                )
            if param.mechanism is None and not _NO_MECHANISM.match(param.name):
                # Match the suffix exactly ("gCa_HVA2bar_Ca_HVA2" is Ca_HVA2, not Ca_HVA).
                owner = next((m for m in mechanism_names if param.name.endswith(f"_{m}")), None)
                if owner is None:
                    problems.append(
                        f"{where}.name: no inserted mechanism owns {param.name!r} (expected a "
                        f"name ending in _<mechanism>; mechanisms: {sorted(inserted)})"
                    )
                    continue
                object.__setattr__(param, "mechanism", owner)
            if param.mechanism is not None:
                needed = expand_location(location, multiloc)
                have = inserted.get(param.mechanism, set())
                if not needed <= have:
                    problems.append(
                        f"{where}: {param.name!r} needs mechanism {param.mechanism!r} at "
                        f"{location!r}, but it is inserted only at {sorted(have) or 'no location'}"
                    )
        seen: set[tuple[str, str]] = set()
        for index, param in enumerate(self.parameters):
            key = (param.name, param.location)
            if key in seen:
                problems.append(f"parameters[{index}]: duplicate parameter {param.full_name!r}")
            seen.add(key)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def free_parameters(self) -> list[ParameterConfig]:
        """The parameters to optimise, in file order."""
        return [p for p in self.parameters if p.is_free]

    @property
    def free_parameter_names(self) -> list[str]:
        """``<name>.<location>`` of the free parameters, in file order."""
        return [p.full_name for p in self.free_parameters]

    def distribution(self, name: str) -> DistributionConfig:
        """The distribution called ``name`` (``uniform`` when not declared)."""
        for dist in self.distributions:
            if dist.name == name:
                return dist
        if name == "uniform":
            return DistributionConfig(name="uniform")
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        """The new (list) format; reading it back gives an equal object."""
        distributions = [d.as_dict() for d in self.distributions]
        if any(p.distribution == "uniform" for p in self.parameters) and not any(
            d.name == "uniform" for d in self.distributions
        ):
            # The reference drops its default "uniform" when the file lists distributions.
            distributions.insert(0, DistributionConfig(name="uniform").as_dict())
        data: dict[str, Any] = {
            "mechanisms": [m.as_dict() for m in self.mechanisms],
            "distributions": distributions,
            "parameters": [p.as_dict() for p in self.parameters],
            "morphology": self.morphology.as_dict(),
            "morph_modifiers": self.morph_modifiers,
        }
        return data
