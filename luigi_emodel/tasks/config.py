"""Luigi configuration sections: where the run root is, and how evaluations are parallelised.

Both are read from ``luigi.cfg`` (or ``LUIGI_CONFIG_PATH``) and may be overridden on the
command line (``--EmodelAPIConfig-emodel-dir run1``). Science settings are not here: they
live in the recipe's ``pipeline_settings``, as in the reference.
"""

from __future__ import annotations

import re
from typing import TypeVar

import luigi

from luigi_emodel.exceptions import ConfigurationError

__all__ = ["EmodelAPIConfig", "EvaluationBackendConfig", "checked_backend_config",
           "checked_config"]

_Config = TypeVar("_Config", bound=luigi.Config)


class EmodelAPIConfig(luigi.Config):
    """``[EmodelAPIConfig]``: the access point (the section name of the reference)."""

    api = luigi.ChoiceParameter(
        default="local", choices=["local"], description="Storage back-end (only 'local')."
    )
    emodel_dir = luigi.Parameter(
        default=".", description="The run root; relative to the directory luigi runs in."
    )
    recipes_path = luigi.Parameter(
        default="recipes.json", description="recipes.json, relative to the run root."
    )
    final_path = luigi.OptionalParameter(
        default=None, description="final.json (default: <run root>/final.json)."
    )
    legacy_dir_structure = luigi.BoolParameter(
        default=False, description="Recipes under <run root>/<emodel>/config/recipes/."
    )
    with_seeds = luigi.BoolParameter(
        default=False, description="Emodel names like cADpyr_L5TPC_3 use recipe cADpyr_L5TPC."
    )
    settings_override = luigi.DictParameter(
        default={}, description="Pipeline settings that replace the recipe's for this run, "
                                "e.g. {\"max_ngen\": 2} for a quick trial (checked like the "
                                "recipe's)."
    )


class EvaluationBackendConfig(luigi.Config):
    """``[EvaluationBackendConfig]``: how the evaluations inside one task are parallelised."""

    backend = luigi.ChoiceParameter(
        default="serial", choices=["serial", "multiprocessing", "ipyparallel", "dask"],
        description="Map function for evaluations.",
    )
    workers = luigi.OptionalIntParameter(
        default=None, description="Processes for multiprocessing / local clusters "
                                  "(default: the CPUs available)."
    )
    ipyparallel_profile = luigi.OptionalParameter(
        default=None, description="Connect to a running ipyparallel cluster of this profile."
    )
    dask_scheduler = luigi.OptionalParameter(
        default=None, description="Address of a running dask scheduler (tcp://host:port)."
    )


def checked_config(config_class: type[_Config]) -> _Config:
    """An instance of a luigi configuration section; a value luigi cannot parse is reported
    as a :class:`ConfigurationError` naming the option.

    Luigi's own error names the section as ``EmodelAPIConfig[args=(), kwargs={}]`` and puts
    the reason in a chained exception; this gives one line, e.g.
    ``luigi configuration: EmodelAPIConfig.with_seeds: cannot interpret 'maybe' as boolean``.
    """
    section = config_class.get_task_family()
    try:
        return config_class()
    except ValueError as error:
        # luigi: "<section>[args=(), kwargs={}]: Error when parsing the default value of
        # 'backend'", caused by "gpu is not a valid choice from {...}".
        found = re.search(r"value of '(\w+)'", str(error))
        field = f".{found.group(1)}" if found else ""
        raise ConfigurationError(
            f"luigi configuration: {section}{field}: {error.__cause__ or error}"
        ) from None


def checked_backend_config() -> EvaluationBackendConfig:
    """``EvaluationBackendConfig()``, its values checked.

    The targets call it when they read the configuration, i.e. while luigi schedules: a bad
    ``backend`` or ``workers`` then stops the run before any task, instead of failing every
    optimisation after the extraction and the compilation already ran.

    Raises:
        ConfigurationError: naming the option, e.g.
            ``luigi configuration: EvaluationBackendConfig.workers: expected a positive
            integer, got -1``.
    """
    config = checked_config(EvaluationBackendConfig)
    if config.workers is not None and config.workers < 1:
        raise ConfigurationError(
            f"luigi configuration: {EvaluationBackendConfig.get_task_family()}.workers: "
            f"expected a positive integer, got {config.workers}"
        )
    return config
