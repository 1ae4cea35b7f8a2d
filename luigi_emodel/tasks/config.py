"""Luigi configuration sections: where the run root is, and how evaluations are parallelised.

Both are read from ``luigi.cfg`` (or ``LUIGI_CONFIG_PATH``) and may be overridden on the
command line (``--EmodelAPIConfig-emodel-dir run1``). Science settings are not here: they
live in the recipe's ``pipeline_settings``, as in the reference.
"""

from __future__ import annotations

import luigi

__all__ = ["EmodelAPIConfig", "EvaluationBackendConfig"]


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
