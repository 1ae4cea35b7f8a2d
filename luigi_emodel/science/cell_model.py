"""The cell model: a BluePyOpt ``CellModel`` built from the model configuration.

Mechanisms are inserted per location (aliases such as ``alldend`` expanded), frozen and free
parameters become BluePyOpt parameters named ``<name>.<location>`` (bare ``<name>`` for
globals, as in final.json), non-uniform distributions become soma-distance scalers, and
distribution parameters become meta-parameters of their scaler.

Axon replacement: by default the morphology's axon is replaced by BluePyOpt's two-section
stub (the modifier the exported hoc reproduces). ``morph_modifiers: []`` in the pipeline
settings keeps the axon as it is.
"""

from __future__ import annotations

import math
from typing import Any

from bluepyopt import ephys

from luigi_emodel.exceptions import ConfigurationError
from luigi_emodel.schemas.model_configuration import (
    LOCATION_ALIASES,
    DistributionConfig,
    ModelConfiguration,
)

__all__ = ["build_cell_model", "check_distribution", "replaces_axon"]

#: morph_modifiers values that mean "BluePyOpt's axon replacement".
_REPLACE_AXON = (None, ["bluepyopt_replace_axon"], ["replace_axon"], [None])


def replaces_axon(morph_modifiers: list[Any] | None) -> bool:
    """True if the settings ask for the default axon replacement; False for ``[]``."""
    if morph_modifiers in _REPLACE_AXON:
        return True
    if morph_modifiers == []:
        return False
    raise ConfigurationError(
        f"morph_modifiers: {morph_modifiers!r} is not supported: use null (replace the axon "
        f"by BluePyOpt's stub, the default), [\"bluepyopt_replace_axon\"] (the same) or [] "
        f"(keep the axon)"
    )


def _seclists(location: str, multiloc_map: dict[str, list[str]] | None) -> list[str]:
    if multiloc_map and location in multiloc_map:
        return list(multiloc_map[location])
    if location == "all":
        return ["all"]  # BluePyOpt's own section list
    return list(LOCATION_ALIASES.get(location, (location,)))


def _locations(location: str, multiloc_map: dict[str, list[str]] | None) -> list[Any]:
    return [
        ephys.locations.NrnSeclistLocation(name, seclist_name=name)
        for name in _seclists(location, multiloc_map)
    ]


def check_distribution(distribution: DistributionConfig,
                       parameter_values: dict[str, float] | None = None) -> None:
    """Evaluate a distribution at a few distances; raise a clear error if it does not work."""
    if distribution.function is None:
        return
    values = {name: 0.0 for name in distribution.parameters}
    values.update(parameter_values or {})
    for distance in (0.0, 100.0, 500.0):
        try:
            expression = distribution.function.format(distance=distance, value=1.0, **values)
            result = eval(expression, {"math": math, "__builtins__": {}})  # noqa: S307
            float(result)
        except Exception as error:  # any failure of a user expression is a config error
            raise ConfigurationError(
                f"distributions[{distribution.name!r}].function: {distribution.function!r} "
                f"does not evaluate at distance {distance}: {type(error).__name__}: {error}"
            ) from None


def build_cell_model(
    configuration: ModelConfiguration,
    name: str,
    morphology_path: str,
    morph_modifiers: list[Any] | None = None,
    multiloc_map: dict[str, list[str]] | None = None,
) -> ephys.models.CellModel:
    """A BluePyOpt cell model of the configuration.

    Args:
        configuration: the model configuration (mechanisms, distributions, parameters).
        name: the cell's name, also the hoc template name at export (the emodel name).
        morphology_path: absolute path of the .asc/.swc file.
        morph_modifiers: the pipeline setting (None: replace the axon; []: keep it).
        multiloc_map: extra multi-location names from the recipe.
    """
    scalers: dict[str, Any] = {"uniform": ephys.parameterscalers.NrnSegmentLinearScaler()}
    for distribution in configuration.distributions:
        if distribution.name == "uniform" or distribution.function is None:
            continue
        check_distribution(distribution)
        scalers[distribution.name] = ephys.parameterscalers.NrnSegmentSomaDistanceScaler(
            name=distribution.name,
            distribution=distribution.function,
            dist_param_names=list(distribution.parameters) or None,
            soma_ref_location=distribution.soma_ref_location,
        )

    mechanisms = [
        ephys.mechanisms.NrnMODMechanism(
            name=f"{mechanism.name}.{mechanism.location}",
            mod_path=None,
            suffix=mechanism.name,
            locations=_locations(str(mechanism.location), multiloc_map),
            preloaded=True,
        )
        for mechanism in configuration.mechanisms
    ]

    parameters: list[Any] = []
    for param in configuration.parameters:
        frozen = not param.is_free
        kwargs: dict[str, Any] = (
            {"value": param.value, "frozen": True} if frozen
            else {"bounds": list(param.value), "frozen": False}  # type: ignore[arg-type]
        )
        if param.location == "global":
            parameters.append(ephys.parameters.NrnGlobalParameter(
                name=param.name, param_name=param.name, **kwargs))
        elif param.location.startswith("distribution_"):
            dist_name = param.location[len("distribution_"):]
            parameters.append(ephys.parameters.MetaParameter(
                name=param.full_name, obj=scalers[dist_name], attr_name=param.name, **kwargs))
        elif param.distribution != "uniform":
            parameters.append(ephys.parameters.NrnRangeParameter(
                name=param.full_name, param_name=param.name,
                value_scaler=scalers[param.distribution],
                locations=_locations(param.location, multiloc_map), **kwargs))
        else:
            parameters.append(ephys.parameters.NrnSectionParameter(
                name=param.full_name, param_name=param.name, value_scaler=scalers["uniform"],
                locations=_locations(param.location, multiloc_map), **kwargs))

    morphology = ephys.morphologies.NrnFileMorphology(
        morphology_path, do_replace_axon=replaces_axon(morph_modifiers)
    )
    return ephys.models.CellModel(
        name=name, morph=morphology, mechs=mechanisms, params=parameters,
    )
