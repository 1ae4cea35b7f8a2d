"""Luigi targets: each ``exists()`` is one question to the access point.

Targets share one access point per process per metadata (:func:`access_point_for`), so a
"nothing to do" pass over thousands of targets parses final.json once, not once per target.
"""

from __future__ import annotations

import configparser
import json
import threading
from collections.abc import Mapping
from typing import Any

import luigi
import luigi.configuration
from luigi.cmdline_parser import CmdlineParser

from luigi_emodel.access_point import LocalAccessPoint, OptimisationState
from luigi_emodel.exceptions import ConfigurationError
from luigi_emodel.schemas import PipelineSettings, parse_model
from luigi_emodel.tasks.config import (
    EmodelAPIConfig,
    checked_backend_config,
    checked_config,
)

__all__ = [
    "METADATA_FIELDS",
    "BestModelTarget",
    "FitnessConfigurationTarget",
    "HocTarget",
    "MechanismsTarget",
    "OptimisationTarget",
    "SonataTarget",
    "ValidatedModelsTarget",
    "ValidationTarget",
    "access_point_for",
]

METADATA_FIELDS = ("emodel", "etype", "ttype", "mtype", "species", "brain_region",
                   "iteration_tag")

_ACCESS_POINTS: dict[tuple[Any, ...], LocalAccessPoint] = {}
_LOCK = threading.Lock()


#: (config parser, command line, raw [EmodelAPIConfig] items, key, EmodelAPIConfig()).
_API_CONFIG: tuple[Any, ...] | None = None


def _raw_section(parser: Any) -> tuple[tuple[str, str], ...] | None:
    """The raw items of ``[EmodelAPIConfig]``; None when they cannot tell whether the values
    changed (a TOML parser, or ``${VAR}`` values that depend on the environment)."""
    if not isinstance(parser, configparser.RawConfigParser):
        return None
    try:
        items = tuple(parser.items(EmodelAPIConfig.get_task_family(), raw=True))
    except configparser.NoSectionError:
        return ()
    if any("$" in str(value) for _, value in items):
        return None
    return items


def _api_config() -> tuple[EmodelAPIConfig, tuple[Any, ...]]:
    """``EmodelAPIConfig()`` and the part of the access-point key it decides.

    Instantiating a luigi Config reads every parameter through the command line and the
    config parser (about 0.5 ms), and a nothing-to-do pass asks once per target: the result
    is reused while the parser, the command line and the raw section are the same objects
    and values (a reloaded or edited configuration, or another ``luigi.run``, reads again).
    """
    global _API_CONFIG
    parser = luigi.configuration.get_config()
    # luigi's own parameters read --EmodelAPIConfig-* options from this instance.
    cmdline = CmdlineParser.get_instance()
    section = _raw_section(parser)
    cached = _API_CONFIG
    if (section is not None and cached is not None and cached[0] is parser
            and cached[1] is cmdline and cached[2] == section):
        return cached[4], cached[3]
    # Checked here, once per configuration read, so that bad values fail the scheduling.
    config = checked_config(EmodelAPIConfig)
    checked_backend_config()
    if not isinstance(config.settings_override, Mapping):
        found = _plain(config.settings_override)
        raise ConfigurationError(
            f"luigi configuration: EmodelAPIConfig.settings_override: expected an object of "
            f"pipeline settings, e.g. {{\"max_ngen\": 2}}, got {found!r}"
        )
    override = json.dumps(dict(config.settings_override), sort_keys=True, default=str)
    key = (config.emodel_dir, config.recipes_path, config.final_path,
           config.legacy_dir_structure, config.with_seeds, override)
    _API_CONFIG = None if section is None else (parser, cmdline, section, key, config)
    return config, key


def access_point_for(**metadata: Any) -> LocalAccessPoint:
    """The process's access point for this metadata and the current ``[EmodelAPIConfig]``."""
    config, config_key = _api_config()
    key = tuple(metadata.get(f) for f in METADATA_FIELDS) + config_key
    with _LOCK:
        access_point = _ACCESS_POINTS.get(key)
        if access_point is None:
            access_point = LocalAccessPoint(
                emodel=metadata["emodel"],
                emodel_dir=config.emodel_dir,
                etype=metadata.get("etype"),
                ttype=metadata.get("ttype"),
                mtype=metadata.get("mtype"),
                species=metadata.get("species"),
                brain_region=metadata.get("brain_region"),
                iteration_tag=metadata.get("iteration_tag"),
                final_path=config.final_path,
                recipes_path=config.recipes_path,
                legacy_dir_structure=config.legacy_dir_structure,
                with_seeds=config.with_seeds,
            )
            if config.settings_override:
                access_point.pipeline_settings = parse_model(
                    PipelineSettings,
                    {**access_point.pipeline_settings.as_dict(),
                     **_plain(config.settings_override)},
                    "luigi configuration", prefix="EmodelAPIConfig.settings_override",
                )
            _ACCESS_POINTS[key] = access_point
        return access_point


def _plain(value: Any) -> Any:
    """Luigi's frozen dicts and tuples as plain JSON values."""
    return json.loads(json.dumps(value, default=lambda v: dict(v) if hasattr(v, "items")
                                 else list(v)))


def forget_access_points() -> None:
    """Drop the cached access points (after the configuration changed, e.g. in tests)."""
    global _API_CONFIG
    with _LOCK:
        _ACCESS_POINTS.clear()
        _API_CONFIG = None


class _AccessPointTarget(luigi.Target):
    """A target answered by the access point of its metadata."""

    def __init__(self, **metadata: Any) -> None:
        self.metadata = {f: metadata.get(f) for f in METADATA_FIELDS}

    @property
    def access_point(self) -> LocalAccessPoint:
        return access_point_for(**self.metadata)


class _SeedTarget(_AccessPointTarget):
    def __init__(self, seed: int, **metadata: Any) -> None:
        super().__init__(**metadata)
        self.seed = int(seed)


class BestModelTarget(_SeedTarget):
    """The best model of ``seed`` is in final.json (``has_best_model``)."""

    def exists(self) -> bool:
        return self.access_point.has_best_model(self.seed)


class ValidationTarget(_SeedTarget):
    """The model of ``seed`` has a validation verdict (``is_checked_by_validation``)."""

    def exists(self) -> bool:
        return self.access_point.is_checked_by_validation(self.seed)


class SonataTarget(_SeedTarget):
    """The model of ``seed`` is exported in SONATA form (``sonata_exists``)."""

    def exists(self) -> bool:
        return self.access_point.sonata_exists(self.seed)


class HocTarget(_SeedTarget):
    """The model of ``seed`` is exported as hoc (``hoc_exists``)."""

    def exists(self) -> bool:
        return self.access_point.hoc_exists(self.seed)


class OptimisationTarget(_SeedTarget):
    """The optimisation of ``seed`` reached its stop criterion (a checkpoint alone is not
    enough)."""

    def exists(self) -> bool:
        return self.access_point.optimisation_state(self.seed) is OptimisationState.COMPLETED


class FitnessConfigurationTarget(_AccessPointTarget):
    """The e-features and protocols exist (``has_fitness_calculator_configuration``)."""

    def exists(self) -> bool:
        return self.access_point.has_fitness_calculator_configuration()


class MechanismsTarget(_AccessPointTarget):
    """The run root's current .mod files are compiled (or there are none)."""

    def exists(self) -> bool:
        from luigi_emodel.science.mechanisms import mechanisms_up_to_date

        return mechanisms_up_to_date(self.access_point)


class ValidatedModelsTarget(_AccessPointTarget):
    """At least ``n_model`` models passed validation (``is_validated``) and every validated
    model is exported in SONATA form."""

    def exists(self) -> bool:
        access_point = self.access_point
        if not access_point.is_validated():
            return False
        return all(access_point.sonata_exists(m.seed)
                   for m in access_point.select_models(only_validated=True, only_best=False))
