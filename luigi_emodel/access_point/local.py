"""LocalAccessPoint: configurations and results of e-models kept in plain files.

One path policy: every relative path (recipes, configurations, final.json, checkpoints,
figures, exports, locks) resolves against ``emodel_dir``, the run root, fixed at
construction: the process's working directory is never consulted afterwards. Names built
from metadata and seeds are checked to stay single path components, so no emodel name,
iteration tag or seed can make a path leave the run root. Paths written from the recipes
must stay inside the run root unless the user gave them as absolute paths.

The file formats are those of BluePyEModel 1.0.50 (see ``formats.md``); where the reference
resolves a path against the working directory or misreads its own files, this class does
the consistent thing and says so in the method's docstring.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from luigi_emodel.access_point._files import (
    atomic_write_json,
    check_component,
    describe,
    read_json,
)
from luigi_emodel.access_point.base import DataAccessPoint, OptimisationState
from luigi_emodel.access_point.final_store import FinalStore
from luigi_emodel.access_point.mod_files import parse_mod_file
from luigi_emodel.exceptions import (
    ConfigurationError,
    MissingFileError,
    StorageError,
    UnknownEModelError,
)
from luigi_emodel.schemas._base import parse_model, validation_error
from luigi_emodel.schemas.fitness_configuration import (
    FitnessCalculatorConfiguration,
    from_legacy,
    same_protocol,
)
from luigi_emodel.schemas.model_configuration import (
    MechanismConfig,
    ModelConfiguration,
    in_legacy_terms,
    legacy_field_paths,
)
from luigi_emodel.schemas.pipeline_settings import PipelineSettings
from luigi_emodel.schemas.recipes import MORPHOLOGY_EXTENSIONS, Recipe
from luigi_emodel.schemas.stored_model import StoredModel, final_key
from luigi_emodel.schemas.targets_configuration import TargetsConfiguration
from luigi_emodel.schemas.workflow import EModelWorkflow

__all__ = ["LocalAccessPoint"]

logger = logging.getLogger(__name__)

#: Folder names under the run root.
CHECKPOINTS_DIR = "checkpoints"
FIGURES_DIR = "figures"
HOC_EXPORT_DIR = "export_emodels_hoc"
SONATA_EXPORT_DIR = "export_emodels_sonata"
MECHANISMS_DIR = "mechanisms"
#: Our own bookkeeping (compiled mechanisms, their lock) lives here.
STATE_DIR = ".luigi_emodel"

#: recipes.json files parsed in this process, shared by all access points (one per emodel in
#: a pass over many e-models): path -> ((st_mtime_ns, st_size, st_ino), content).
_RECIPES: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}
#: A file modified this recently (ns) may be rewritten with the same size and timestamp (file
#: systems keep times to a tick, or to 1-2 s): such a version is not shared, so that a new
#: access point reads the file itself.
_RACY_NS = 2_000_000_000


def _first_two_parts(name: str) -> str:
    return "_".join(name.split("_")[:2])


def _abspath(path: str | os.PathLike[str], base: Path) -> Path:
    """``path`` made absolute against ``base``, normalised without resolving symlinks."""
    path = Path(path)
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _seed_int(seed: Any) -> int:
    if isinstance(seed, bool):
        raise ConfigurationError(f"seed: expected an integer, got {seed!r}")
    try:
        value = int(seed)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise ConfigurationError(f"seed: expected an integer, got {seed!r}") from None
    if isinstance(seed, float) and not seed.is_integer():
        raise ConfigurationError(f"seed: expected an integer, got {seed!r}")
    return value


class LocalAccessPoint(DataAccessPoint):
    """Access to the files of one e-model under a run root.

    Args:
        emodel: name of the e-model (a NEURON template name).
        emodel_dir: the run root. Default: the working directory, or
            ``<working directory>/run/<iteration_tag>`` when an iteration tag is given.
        etype, ttype, mtype, species, brain_region, iteration_tag, synapse_class: metadata.
        final_path: final.json; relative paths resolve against ``emodel_dir`` (the reference
            resolves them against the working directory). Default ``emodel_dir/final.json``.
        recipes_path: recipes.json, relative to ``emodel_dir``; default ``recipes.json``.
        legacy_dir_structure: recipes at ``emodel_dir/<first two '_' parts of emodel>/config/
            recipes/recipes.json``, recipe paths under ``emodel_dir/<those parts>/``.
        with_seeds: an emodel name like ``cADpyr_L5TPC_3`` uses the recipe ``cADpyr_L5TPC``.

    Example:
        >>> ap = LocalAccessPoint("L5PC", emodel_dir="project", recipes_path="recipes.json")
        ... # doctest: +SKIP
        >>> ap.has_best_model(seed=1)  # doctest: +SKIP
        False
    """

    def __init__(
        self,
        emodel: str,
        emodel_dir: str | os.PathLike[str] | None = None,
        etype: str | None = None,
        ttype: str | None = None,
        mtype: str | None = None,
        species: str | None = None,
        brain_region: str | None = None,
        iteration_tag: str | None = None,
        synapse_class: str | None = None,
        final_path: str | os.PathLike[str] | None = None,
        recipes_path: str | os.PathLike[str] | None = None,
        legacy_dir_structure: bool = False,
        with_seeds: bool = False,
    ) -> None:
        try:
            super().__init__(emodel, etype, ttype, mtype, species, brain_region, iteration_tag,
                             synapse_class)
        except ValidationError as error:
            raise validation_error("metadata", error) from None
        cwd = Path.cwd()
        if emodel_dir is None:
            self.emodel_dir = cwd / "run" / iteration_tag if self.emodel_metadata.iteration else cwd
        else:
            self.emodel_dir = _abspath(emodel_dir, cwd)
        self.legacy_dir_structure = bool(legacy_dir_structure)
        self.with_seeds = bool(with_seeds)
        self.recipes_path = _abspath(recipes_path or "recipes.json", self.emodel_dir)
        self.final_path = _abspath(final_path or "final.json", self.emodel_dir)
        self.final_store = FinalStore.for_path(self.final_path, root=self.emodel_dir)
        self.unfrozen_params: list[str] | None = None
        self._recipes_cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self.pipeline_settings = self.load_pipeline_settings()

    # -- names and paths -------------------------------------------------------------------------

    @property
    def run_root(self) -> Path:
        """The run root (``emodel_dir``), absolute."""
        return self.emodel_dir

    def _describe(self, path: Path) -> str:
        return describe(path, self.emodel_dir)

    @property
    def _recipe_name(self) -> str:
        """The recipes.json key of this e-model."""
        emodel = self.emodel_metadata.emodel
        return _first_two_parts(emodel) if self.with_seeds else emodel

    @property
    def _legacy_root(self) -> Path:
        return self.emodel_dir / _first_two_parts(self.emodel_metadata.emodel)

    @property
    def _recipes_file(self) -> Path:
        if self.legacy_dir_structure:
            return self._legacy_root / "config" / "recipes" / "recipes.json"
        return self.recipes_path

    def _recipe_base(self) -> Path:
        """The folder that relative paths of the recipe resolve against."""
        return self._legacy_root if self.legacy_dir_structure else self.emodel_dir

    def resolve_input(self, path: str | os.PathLike[str]) -> Path:
        """An input path from a configuration file, made absolute against the run root."""
        return _abspath(path, self._recipe_base())

    def _output_path(self, path: str | os.PathLike[str], what: str) -> Path:
        """A path to write: relative paths must stay inside the run root."""
        resolved = _abspath(path, self._recipe_base())
        if not Path(path).is_absolute():
            try:
                resolved.relative_to(self.emodel_dir)
            except ValueError:
                raise ConfigurationError(
                    f"{what}: {str(path)!r} leaves the run root {self.emodel_dir}; give an "
                    f"absolute path to write outside it"
                ) from None
        return resolved

    def _run_path(self, *parts: str) -> Path:
        """A path under the run root built from names (each checked as one path component)."""
        for part in parts:
            check_component(part, "name")
        return self.emodel_dir.joinpath(*parts)

    def checkpoint_path(self, seed: int) -> Path:
        """``checkpoints/<emodel>/<iteration>/<as_string(seed)>.pkl`` (BluePyOpt pickle)."""
        seed = _seed_int(seed)
        metadata = self.emodel_metadata
        return self._run_path(
            CHECKPOINTS_DIR, metadata.emodel, str(metadata.iteration),
            f"{metadata.as_string(seed=seed)}.pkl",
        )

    def optimisation_progress_path(self, seed: int) -> Path:
        """Sidecar of the checkpoint: generation reached and whether the run is complete."""
        checkpoint = self.checkpoint_path(seed)
        return checkpoint.with_name(checkpoint.stem + ".progress.json")

    def figures_dir(self, *sub: str) -> Path:
        """``figures/<emodel>/<sub...>`` (not created)."""
        return self._run_path(FIGURES_DIR, self.emodel_metadata.emodel, *sub)

    def figure_path(self, kind: str, seed: int | None = None, extension: str = "pdf") -> Path:
        """``figures/<emodel>/<kind>/<as_string(seed)>__<kind>.<extension>``."""
        name = f"{self.emodel_metadata.as_string(seed=seed)}__{kind}.{extension}"
        return self._run_path(FIGURES_DIR, self.emodel_metadata.emodel, kind, name)

    def export_dir(self, kind: str, seed: int) -> Path:
        """``export_emodels_hoc/<as_string(seed)>`` or ``export_emodels_sonata/...``."""
        base = {"hoc": HOC_EXPORT_DIR, "sonata": SONATA_EXPORT_DIR}.get(kind)
        if base is None:
            raise ConfigurationError(f"export kind: expected 'hoc' or 'sonata', got {kind!r}")
        return self._run_path(base, self.emodel_metadata.as_string(seed=_seed_int(seed)))

    def state_dir(self, *sub: str) -> Path:
        """Our own bookkeeping under the run root (e.g. compiled mechanisms)."""
        return self._run_path(STATE_DIR, *sub)

    # -- recipes ---------------------------------------------------------------------------------

    def get_all_recipes(self) -> dict[str, Any]:
        """All entries of recipes.json (cached on the file's stat, and shared with the other
        access points of the process once the file is not new).

        Read-only: do not mutate what is returned.
        """
        path = self._recipes_file
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise MissingFileError(
                f"{self._describe(path)}: recipes file not found (run root {self.emodel_dir})"
            ) from None
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._recipes_cache is not None and self._recipes_cache[0] == key:
            return self._recipes_cache[1]
        shared = _RECIPES.get(path)
        if shared is not None and shared[0] == key:
            data = shared[1]
        else:
            data = read_json(path, self._describe(path))
            if not isinstance(data, dict):
                raise ConfigurationError(
                    f"{self._describe(path)}: expected an object mapping emodel names to "
                    f"recipes, found {type(data).__name__}"
                )
            if time.time_ns() - stat.st_mtime_ns > _RACY_NS:
                _RECIPES[path] = (key, data)
        self._recipes_cache = (key, data)
        return data

    def _recipe(self) -> Recipe:
        recipes = self.get_all_recipes()
        name = self._recipe_name
        if name not in recipes:
            known = ", ".join(sorted(recipes)) or "none"
            raise UnknownEModelError(
                f"{self._describe(self._recipes_file)}: no recipe for emodel {name!r} "
                f"(known: {known})"
            )
        return parse_model(Recipe, recipes[name], self._describe(self._recipes_file), prefix=name)

    def get_recipes(self) -> dict[str, Any]:
        """The recipe of this e-model (validated), as a dict."""
        self._recipe()
        return dict(self.get_all_recipes()[self._recipe_name])

    def get_json_path(self, recipe_entry: str) -> Path:
        """The absolute path of the file named by ``recipe_entry`` of the recipe."""
        recipe = self.get_recipes()
        if recipe_entry not in recipe or recipe[recipe_entry] is None:
            raise ConfigurationError(
                f"{self._describe(self._recipes_file)}: {self._recipe_name}.{recipe_entry}: "
                f"missing"
            )
        value = recipe[recipe_entry]
        if not isinstance(value, str):
            raise ConfigurationError(
                f"{self._describe(self._recipes_file)}: {self._recipe_name}.{recipe_entry}: "
                f"expected a path, got {type(value).__name__}"
            )
        return self.resolve_input(value)

    def _recipe_field(self, recipe_entry: str) -> str:
        """``recipes.json: <emodel>.<entry>``: where a recipe value comes from, for messages."""
        return f"{self._describe(self._recipes_file)}: {self._recipe_name}.{recipe_entry}"

    def _settings_field(self, key: str) -> str:
        """Where a pipeline setting comes from (the recipe or its settings file), for messages."""
        if isinstance(self._recipe().pipeline_settings, str):
            return f"{self._describe(self.get_json_path('pipeline_settings'))}: {key}"
        return self._recipe_field(f"pipeline_settings.{key}")

    def get_json(self, recipe_entry: str) -> Any:
        """The JSON content of the file named by ``recipe_entry`` of the recipe."""
        path = self.get_json_path(recipe_entry)
        return read_json(path, self._describe(path), self._recipe_field(recipe_entry))

    def load_pipeline_settings(self) -> PipelineSettings:
        """The pipeline settings of the recipe (inline or in a file), checked."""
        recipe = self._recipe()
        settings = recipe.pipeline_settings
        if isinstance(settings, str):
            path = self.get_json_path("pipeline_settings")
            source, prefix = self._describe(path), ""
            settings = read_json(path, source, self._recipe_field("pipeline_settings"))
        else:
            source = self._describe(self._recipes_file)
            prefix = f"{self._recipe_name}.pipeline_settings"
            settings = dict(settings or {})
        if not isinstance(settings, dict):
            raise ConfigurationError(f"{source}: expected an object of pipeline settings")
        settings = dict(settings)
        if "morph_modifiers" not in settings and recipe.morph_modifiers is not None:
            settings["morph_modifiers"] = recipe.morph_modifiers
        return parse_model(PipelineSettings, settings, source, prefix=prefix)

    def has_pipeline_settings(self) -> bool:
        """True if the recipe has pipeline settings."""
        return self.get_recipes().get("pipeline_settings") is not None

    def set_emodel(self, emodel: str) -> None:
        """Switch to another emodel of the same recipes (seed suffix stripped with_seeds)."""
        name = _first_two_parts(emodel) if self.with_seeds else emodel
        if name not in self.get_all_recipes():
            known = ", ".join(sorted(self.get_all_recipes()))
            raise UnknownEModelError(
                f"{self._describe(self._recipes_file)}: no recipe for emodel {name!r} "
                f"(known: {known})"
            )
        self.unfrozen_params = None
        self.emodel_metadata.emodel = name
        self.pipeline_settings = self.load_pipeline_settings()

    @staticmethod
    def recipe_emodels(emodel_dir: str | os.PathLike[str],
                       recipes_path: str | os.PathLike[str] | None = None) -> list[str]:
        """The emodel names of ``emodel_dir``'s recipes.json, in file order, without checking
        any recipe (for tools that go over every e-model of a run root).

        ``recipes_path`` resolves against ``emodel_dir`` as in the constructor.
        """
        root = _abspath(emodel_dir, Path.cwd())
        path = _abspath(recipes_path or "recipes.json", root)
        source = describe(path, root)
        if not path.exists():
            raise MissingFileError(f"{source}: recipes file not found (run root {root})")
        data = read_json(path, source)
        if not isinstance(data, dict):
            raise ConfigurationError(f"{source}: expected an object mapping emodel names to "
                                     f"recipes, found {type(data).__name__}")
        return list(data)

    @classmethod
    def add_entry_recipes(
        cls,
        recipes_path: str | os.PathLike[str],
        emodel: str,
        morph_path: str,
        morphology: list[str] | tuple[str, str],
        parameters_path: str,
        protocols_path: str | None,
        features_path: str,
        pipeline_settings: dict[str, Any] | None = None,
    ) -> None:
        """Add (or replace) the recipe of ``emodel``; create recipes.json if needed.

        The entry is checked before anything is written; the file is replaced atomically.
        """
        path = Path(recipes_path)
        recipes: dict[str, Any] = {}
        if path.is_file():
            recipes = read_json(path, str(path))
            if not isinstance(recipes, dict):
                raise ConfigurationError(f"{path}: expected an object mapping emodels to recipes")
        settings = (
            PipelineSettings().as_dict() if pipeline_settings is None
            else parse_model(PipelineSettings, pipeline_settings, "pipeline_settings").as_dict()
        )
        entry = {
            "morph_path": morph_path,
            "morphology": [list(morphology)],
            "params": parameters_path,
            "protocol": protocols_path,
            "features": features_path,
            "pipeline_settings": settings,
        }
        parse_model(Recipe, entry, str(path), prefix=emodel)
        recipes[emodel] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, recipes)

    # -- morphology and mechanisms ---------------------------------------------------------------

    @property
    def morph_dir(self) -> Path:
        """The morphology folder of the recipe (default ``morphology``)."""
        morph_path = self._recipe().morph_path
        candidate = self.resolve_input(morph_path)
        if self.legacy_dir_structure and not candidate.is_dir():
            # The reference resolves morph_path against emodel_dir even in legacy layout.
            candidate = _abspath(morph_path, self.emodel_dir)
        return candidate

    @property
    def morph_path(self) -> Path:
        """The morphology file of the recipe (first .asc/.swc of the list); must exist."""
        recipe = self._recipe()
        path = self.morph_dir / recipe.morphology_file
        if not path.is_file():
            raise MissingFileError(
                f"{self._describe(self._recipes_file)}: {self._recipe_name}.morphology: "
                f"morphology file not found: {self._describe(path)}"
            )
        return path

    def get_morphologies(self) -> dict[str, Any]:
        """``{"name": stem, "path": file}`` plus the recipe's seclist and secarray names."""
        recipe = self._recipe()
        morphology: dict[str, Any] = {"name": self.morph_path.stem, "path": str(self.morph_path)}
        if recipe.seclist_names is not None:
            morphology["seclist_names"] = recipe.seclist_names
        if recipe.secarray_names is not None:
            morphology["secarray_names"] = recipe.secarray_names
        return morphology

    def get_available_morphologies(self) -> set[str] | None:
        """Stems of the morphology files in the morphology folder (None if no folder)."""
        folder = self.morph_dir
        if not folder.is_dir():
            return None
        return {p.stem for p in folder.iterdir() if p.suffix in MORPHOLOGY_EXTENSIONS}

    def get_mechanisms_directory(self) -> Path | None:
        """``emodel_dir/mechanisms`` if it exists."""
        folder = self.emodel_dir / MECHANISMS_DIR
        return folder if folder.is_dir() else None

    def get_available_mechanisms(self) -> list[MechanismConfig] | None:
        """The mechanisms of the .mod files: name (SUFFIX / POINT_PROCESS) and ions written."""
        folder = self.get_mechanisms_directory()
        if folder is None:
            return None
        return [
            parse_mod_file(path, self._describe(path)) for path in sorted(folder.glob("*.mod"))
        ]

    # -- model configuration ---------------------------------------------------------------------

    def _model_configuration_context(self, recipe: Recipe) -> dict[str, Any]:
        return {
            "locations": list(recipe.seclist_names or []) + list(recipe.secarray_names or []),
            "multiloc_map": recipe.multiloc_map or {},
        }

    def has_model_configuration(self) -> bool:
        """True if the model-configuration file exists (resolved against the run root)."""
        recipe = self._recipe()
        return self.resolve_input(recipe.params_path).is_file()

    def get_model_configuration(self, skip_get_available_morph: bool = False) -> ModelConfiguration:
        """The model configuration, from either format, checked.

        The morphology comes from the recipe; ``morph_modifiers`` from the recipe win over
        those of the file (as in the reference). With :meth:`set_unfrozen_params`, every free
        parameter not listed is frozen at its value in this e-model's best stored model.
        """
        recipe = self._recipe()
        path = self.get_json_path(recipe.params_key)
        source = self._describe(path)
        data = read_json(path, source, self._recipe_field(recipe.params_key))
        if not isinstance(data, dict):
            raise ConfigurationError(f"{source}: expected an object with 'mechanisms' and "
                                     f"'parameters'")
        try:
            configuration = parse_model(ModelConfiguration, data, source,
                                        context=self._model_configuration_context(recipe))
        except ConfigurationError as error:
            paths = legacy_field_paths(data)
            if not paths:
                raise
            # Name the fields as the legacy file spells them, not as the converted lists do.
            raise ConfigurationError(in_legacy_terms(str(error), paths)) from None
        morphology = configuration.morphology.model_copy(update={
            "name": self.morph_path.stem,
            "path": str(self.morph_path),
            "format": self.morph_path.suffix.lstrip(".").lower(),
            **({"seclist_names": recipe.seclist_names} if recipe.seclist_names else {}),
            **({"secarray_names": recipe.secarray_names} if recipe.secarray_names else {}),
        })
        updates: dict[str, Any] = {"morphology": morphology}
        if recipe.morph_modifiers is not None:
            updates["morph_modifiers"] = recipe.morph_modifiers
        configuration = configuration.model_copy(update=updates)
        if self.unfrozen_params is not None:
            configuration = self._freeze_params(configuration)
        return configuration

    def _freeze_params(self, configuration: ModelConfiguration) -> ModelConfiguration:
        best = self.get_emodel()
        if best is None:
            raise StorageError(
                f"{self.final_store.name}: no stored model of {self.emodel_metadata.emodel!r} "
                f"to take the frozen parameter values from"
            )
        assert self.unfrozen_params is not None
        unknown = set(self.unfrozen_params) - set(configuration.free_parameter_names)
        if unknown:
            raise ConfigurationError(
                f"unfrozen parameters: {sorted(unknown)} are not free parameters of the model "
                f"configuration"
            )
        parameters = []
        for param in configuration.parameters:
            if param.is_free and param.full_name not in self.unfrozen_params:
                if param.full_name not in best.parameters:
                    raise StorageError(
                        f"{self.final_store.name}: {best.key}.parameters has no "
                        f"{param.full_name!r} to freeze"
                    )
                param = param.model_copy(update={"value": best.parameters[param.full_name]})
            parameters.append(param)
        return configuration.model_copy(update={"parameters": parameters})

    def set_unfrozen_params(self, params: list[str] | None) -> None:
        """Optimise only these parameters (``<name>.<location>``); freeze the others."""
        self.unfrozen_params = list(params) if params is not None else None

    def store_model_configuration(self, configuration: ModelConfiguration,
                                  path: str | os.PathLike[str] | None = None) -> Path:
        """Write the model configuration (new format) to ``path`` or the recipe's path.

        Relative paths resolve against the run root (the reference uses the working directory).
        """
        if not isinstance(configuration, ModelConfiguration):
            configuration = parse_model(ModelConfiguration, configuration, "model configuration")
        target = self._output_path(
            path if path is not None else self._recipe().params_path, "model configuration path"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(target, configuration.as_dict())
        return target

    # -- fitness calculator and targets configurations -------------------------------------------

    def has_fitness_calculator_configuration(self) -> bool:
        """True if the features file of the recipe exists."""
        recipe = self._recipe()
        return recipe.features is not None and self.resolve_input(recipe.features).is_file()

    def get_fitness_calculator_configuration(
        self, record_ions_and_currents: bool = False
    ) -> FitnessCalculatorConfiguration:
        """The e-features and protocols (new format, or the legacy features + protocol pair).

        The pipeline settings' ``threshold_efeature_std`` applies to features that do not set
        their own (the reference drops it for the new format), and ``validation_protocols``
        marks validation protocols.
        """
        settings = self.pipeline_settings
        path = self.get_json_path("features")
        source = self._describe(path)
        data = read_json(path, source, self._recipe_field("features"))
        if not isinstance(data, dict):
            raise ConfigurationError(f"{source}: expected an object")
        if "efeatures" not in data and "protocols" not in data:
            protocols_path = self.get_json_path("protocol")
            protocols = read_json(protocols_path, self._describe(protocols_path),
                                  self._recipe_field("protocol"))
            if not isinstance(protocols, dict):
                raise ConfigurationError(
                    f"{self._describe(protocols_path)}: expected an object keyed by protocol"
                )
            try:
                data = from_legacy(
                    data, protocols,
                    validation_protocols=settings.validation_protocols,
                    threshold_efeature_std=settings.threshold_efeature_std,
                    default_std_value=settings.default_std_value,
                    stochasticity=settings.stochasticity,
                )
            except ValueError as error:
                raise ConfigurationError(
                    f"{source} + {self._describe(protocols_path)}: {error}"
                ) from None
            source = f"{source} (legacy, with {self._describe(protocols_path)})"
        else:
            data = dict(data)
            features = []
            for feature in data.get("efeatures") or []:
                if isinstance(feature, dict) and feature.get("threshold_efeature_std") is None \
                        and settings.threshold_efeature_std is not None:
                    feature = {**feature, "threshold_efeature_std": settings.threshold_efeature_std}
                features.append(feature)
            data["efeatures"] = features
        configuration = parse_model(FitnessCalculatorConfiguration, data, source)
        if settings.validation_protocols:
            protocols = [
                p.model_copy(update={"validation": p.validation or any(
                    same_protocol(v, p.name) for v in settings.validation_protocols)})
                for p in configuration.protocols
            ]
            configuration = configuration.model_copy(update={"protocols": protocols})
        return configuration

    def store_fitness_calculator_configuration(
        self, configuration: FitnessCalculatorConfiguration
    ) -> Path:
        """Write the e-features and protocols (new format) at the recipe's ``features`` path."""
        if not isinstance(configuration, FitnessCalculatorConfiguration):
            configuration = parse_model(FitnessCalculatorConfiguration, configuration,
                                        "fitness calculator configuration")
        recipe = self._recipe()
        if recipe.features is None:
            raise ConfigurationError(
                f"{self._describe(self._recipes_file)}: {self._recipe_name}.features: missing"
            )
        target = self._output_path(recipe.features, "features path")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(target, configuration.as_dict())
        return target

    def _targets_path(self) -> Path:
        path = self.pipeline_settings.path_extract_config
        if path is None:
            raise ConfigurationError(
                f"{self._describe(self._recipes_file)}: {self._recipe_name}.pipeline_settings."
                f"path_extract_config: not set, so there is no targets configuration"
            )
        return self.resolve_input(path)

    def has_targets_configuration(self) -> bool:
        """True if ``path_extract_config`` is set and the file exists."""
        if self.pipeline_settings.path_extract_config is None:
            return False
        return self._targets_path().is_file()

    def get_targets_configuration(self) -> TargetsConfiguration:
        """The targets configuration at ``path_extract_config`` (``auto_targets`` included)."""
        path = self._targets_path()
        data = read_json(path, self._describe(path), self._settings_field("path_extract_config"))
        return parse_model(TargetsConfiguration, data, self._describe(path))

    def store_targets_configuration(self, configuration: TargetsConfiguration) -> Path:
        """Write the targets configuration at ``path_extract_config`` (run-root relative)."""
        if not isinstance(configuration, TargetsConfiguration):
            configuration = parse_model(TargetsConfiguration, configuration,
                                        "targets configuration")
        configuration = configuration.model_copy(update={
            "emodel": self.emodel_metadata.emodel, "ttype": self.emodel_metadata.ttype,
        })
        self._targets_path()  # a clear error when path_extract_config is not set
        target = self._output_path(str(self.pipeline_settings.path_extract_config),
                                   "path_extract_config")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(target, configuration.as_dict())
        return target

    # -- workflow (not persisted locally, as in the reference) -----------------------------------

    def create_emodel_workflow(self, state: str = "not launched") -> EModelWorkflow:
        """An empty workflow object (workflows are not stored locally)."""
        return EModelWorkflow(state=state)  # type: ignore[arg-type]  # checked by pydantic

    def get_emodel_workflow(self) -> tuple[None, None]:
        """Workflows are not stored locally: ``(None, None)``."""
        return None, None

    def check_emodel_workflow_configurations(self, emodel_workflow: EModelWorkflow) -> bool:
        """Always True locally: the files themselves are the configuration."""
        return True

    def store_or_update_emodel_workflow(self, emodel_workflow: EModelWorkflow) -> None:
        """No-op locally."""

    # -- final.json ------------------------------------------------------------------------------

    def get_model_name_for_final(self, seed: int | str) -> str:
        """The final.json key: ``<emodel>__<iteration>__<seed>`` (or ``<emodel>__<seed>``)."""
        return final_key(self.emodel_metadata.emodel, self.emodel_metadata.iteration,
                         _seed_int(seed))

    def get_final(self, lock_file: bool = True) -> dict[str, Any]:
        """A copy of final.json's content ({} when absent). ``lock_file`` is accepted for
        compatibility: reads need no lock since writes are atomic."""
        return self.final_store.copy()

    def get_final_content(self, lock_file: bool = True) -> dict[str, Any]:
        """final.json's content, or the recipe's ``final`` file (EM_*.json) when it has one."""
        recipe = self._recipe()
        if recipe.final is None:
            return self.get_final(lock_file=lock_file)
        config = self.get_json("final")
        if not isinstance(config, dict):
            raise ConfigurationError(f"{self._describe(self.get_json_path('final'))}: "
                                     f"expected an object")

        def as_dict(items: Any) -> Any:
            if isinstance(items, list):
                return {i["name"]: i.get("value") for i in items}
            return items

        try:
            return {
                self.emodel_metadata.emodel: {
                    **self.emodel_metadata.as_dict(),
                    "score": config["fitness"],
                    "parameters": as_dict(config["parameter"]),
                    "fitness": as_dict(config["score"]),
                    "features": as_dict(config.get("features")),
                    "validation_fitness": as_dict(config.get("scoreValidation")),
                    "validated": config.get("passedValidation"),
                    "seed": config["seed"],
                }
            }
        except (KeyError, TypeError) as error:
            raise ConfigurationError(
                f"{self._describe(self.get_json_path('final'))}: missing or malformed {error}"
            ) from None

    def _entries(self) -> Any:
        if self._recipe().final is not None:
            return self.get_final_content()
        return self.final_store.entries()

    def save_final(self, final: dict[str, Any], final_path: str | os.PathLike[str] | None = None,
                   lock_file: bool = True) -> None:
        """Replace the whole content of final.json (or of ``final_path``) atomically."""
        path = self.final_path if final_path is None else _abspath(final_path, self.emodel_dir)
        store = self.final_store if path == self.final_path else FinalStore.for_path(
            path, root=self.emodel_dir)
        store.replace_all(final)

    def format_emodel_data(self, model_data: dict[str, Any]) -> StoredModel:
        """A final.json entry (any spelling) as a :class:`StoredModel`."""
        if not isinstance(model_data, dict):
            raise StorageError(f"{self.final_store.name}: expected an entry object, found "
                               f"{type(model_data).__name__}")
        data = dict(model_data)
        data.setdefault("emodel", self.emodel_metadata.emodel)
        return parse_model(StoredModel, data, self.final_store.name)

    def _stored(self, key: str, entry: Any,
                memo: dict[str, tuple[Any, Any]] | None = None) -> StoredModel:
        """The entry as a StoredModel, reusing the one made for this very entry object if the
        store's memo has it (one validation per entry per version of final.json)."""
        if memo is not None:
            cached = memo.get(key)
            if cached is not None and cached[0] is entry:
                return cached[1]  # type: ignore[no-any-return]
        if not isinstance(entry, dict):
            raise StorageError(
                f"{self.final_store.name}: {key}: expected an entry object, found "
                f"{type(entry).__name__}"
            )
        data = dict(entry)
        data.setdefault("emodel", self.emodel_metadata.emodel)
        try:
            model = StoredModel.model_validate(data)
        except ValidationError as error:
            raise StorageError(
                str(validation_error(self.final_store.name, error, prefix=key))) from None
        if memo is not None and "emodel" in entry:  # else it depends on this access point
            memo[key] = (entry, model)
        return model

    def get_emodel(self, lock_file: bool = True) -> StoredModel | None:
        """The model stored under the bare emodel name (legacy), else the best-scoring stored
        model of this e-model and metadata; None if there is none."""
        entries = self._entries()
        name = self.emodel_metadata.emodel
        if name in entries:
            return self._stored(name, entries[name])
        models = self.get_emodels()
        if not models:
            logger.warning("no stored model for emodel %s", name)
            return None
        return min(models, key=lambda m: m.score if m.score is not None else math.inf)

    def get_emodels(self, emodels: list[str] | None = None) -> list[StoredModel]:
        """Stored models of ``emodels`` (default: this one) whose metadata equal this access
        point's (None included), as in the reference."""
        names = set(emodels) if emodels is not None else {self.emodel_metadata.emodel}
        wanted = self.emodel_metadata.as_dict()
        models = []
        if self._recipe().final is not None:
            entries, memo = self.get_final_content(), None
        else:
            entries, memo = self.final_store.entries_and_memo()
        for key, entry in entries.items():
            if not isinstance(entry, dict) or entry.get("emodel", key.split("__")[0]) not in names:
                continue
            model = self._stored(key, entry, memo)
            found = model.metadata_dict()
            if all(found[k] == v for k, v in wanted.items() if k != "emodel"):
                models.append(model)
        return models

    def get_emodel_names(self) -> dict[str, str]:
        """Stored model keys -> emodel names."""
        return {
            key: (entry.get("emodel", key) if isinstance(entry, dict) else key)
            for key, entry in self._entries().items()
        }

    def has_best_model(self, seed: int) -> bool:
        """True if final.json holds the model of this e-model, iteration and ``seed``."""
        return self.get_model_name_for_final(seed) in self._entries()

    def is_checked_by_validation(self, seed: int) -> bool:
        """True if the stored model of ``seed`` has a validation verdict (true or false)."""
        key = self.get_model_name_for_final(seed)
        entry = self._entries().get(key)
        if entry is None:
            return False
        if not isinstance(entry, dict):
            raise StorageError(f"{self.final_store.name}: {key}: expected an entry object, "
                               f"found {type(entry).__name__}")
        return entry.get("validated") is not None

    def is_validated(self) -> bool:
        """True if at least ``n_model`` models of this e-model and iteration passed validation."""
        emodel, iteration = self.emodel_metadata.emodel, self.emodel_metadata.iteration
        count = 0
        for entry in self._entries().values():
            if not isinstance(entry, dict):
                continue
            entry_iteration = entry.get("iteration", entry.get("githash", entry.get("iteration_tag")))
            if entry.get("emodel") == emodel and entry_iteration == iteration \
                    and entry.get("validated") is True:
                count += 1
        return count >= self.pipeline_settings.n_model

    def count_validated(self, seeds: list[int] | None = None) -> tuple[int, int]:
        """(validated, checked) among this e-model's stored models (of ``seeds`` if given)."""
        validated = checked = 0
        keys = None if seeds is None else {self.get_model_name_for_final(s) for s in seeds}
        emodel, iteration = self.emodel_metadata.emodel, self.emodel_metadata.iteration
        for key, entry in self._entries().items():
            if not isinstance(entry, dict) or (keys is not None and key not in keys):
                continue
            if entry.get("emodel") != emodel or entry.get("iteration") != iteration:
                continue
            if entry.get("validated") is not None:
                checked += 1
                validated += entry["validated"] is True
        return validated, checked

    def store_emodel(self, emodel: StoredModel | dict[str, Any]) -> None:
        """Store a model in final.json under ``get_model_name_for_final(emodel.seed)``.

        The entry takes this access point's metadata; an existing entry with the same key is
        replaced (with a warning). Every other entry is kept byte for byte.
        """
        if isinstance(emodel, dict):
            emodel = self.format_emodel_data(emodel)
        metadata = self.emodel_metadata
        entry = emodel.model_copy(update={
            **metadata.as_dict(), "allen_notation": metadata.allen_notation,
        })
        if entry.fitness:
            entry = entry.model_copy(update={"score": float(sum(entry.finite_fitness.values()))})
        key = self.get_model_name_for_final(entry.seed)
        # Serialise before taking the lock: a bad value fails here, with nothing written.
        payload = json.loads(json.dumps(entry.as_dict(), default=_to_json))
        if self.final_store.put(key, payload):
            logger.warning("%s: entry %s was already stored and has been replaced",
                           self.final_store.name, key)

    def store_or_update_emodel(self, emodel: StoredModel | dict[str, Any]) -> None:
        """Same as :meth:`store_emodel`."""
        self.store_emodel(emodel)

    # -- optimisation state ----------------------------------------------------------------------

    def read_optimisation_progress(self, seed: int) -> dict[str, Any] | None:
        """The progress sidecar of ``seed``'s checkpoint, or None."""
        path = self.optimisation_progress_path(seed)
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise StorageError(f"{self._describe(path)}: unreadable: {error}") from None
        return data if isinstance(data, dict) else None

    def store_optimisation_progress(self, seed: int, progress: dict[str, Any]) -> None:
        """Write the progress sidecar of ``seed``'s checkpoint atomically."""
        path = self.optimisation_progress_path(seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, progress)

    def optimisation_state(self, seed: int | None = None,
                           continue_opt: bool = False) -> OptimisationState:
        """EMPTY without checkpoint; COMPLETED only if the run reached its stop criterion with
        the current ``max_ngen`` (a raised ``max_ngen`` makes it IN_PROGRESS again);
        IN_PROGRESS otherwise.

        Unlike the reference, an existing checkpoint alone never means COMPLETED;
        ``continue_opt`` is accepted for compatibility and does not change the answer.
        """
        seed = _seed_int(seed if seed is not None else 1)
        if not self.checkpoint_path(seed).is_file():
            return OptimisationState.EMPTY
        progress = self.read_optimisation_progress(seed)
        if not progress or not progress.get("completed"):
            return OptimisationState.IN_PROGRESS
        reached_max = int(progress.get("generation", 0)) >= self.pipeline_settings.max_ngen
        if progress.get("stopped_by") == "max_ngen" and not reached_max:
            return OptimisationState.IN_PROGRESS
        return OptimisationState.COMPLETED

    # -- exports ---------------------------------------------------------------------------------

    def sonata_exists(self, seed: int) -> bool:
        """True if ``export_emodels_sonata/<as_string(seed)>/model.hoc`` exists."""
        return (self.export_dir("sonata", seed) / "model.hoc").is_file()

    def hoc_exists(self, seed: int) -> bool:
        """True if ``export_emodels_hoc/<as_string(seed)>/model.hoc`` exists."""
        return (self.export_dir("hoc", seed) / "model.hoc").is_file()

    def select_models(self, only_validated: bool = False, only_best: bool = True,
                      seeds: list[int] | None = None) -> list[StoredModel]:
        """Stored models of this e-model: of ``seeds`` if given, validated only if asked, and
        the best one only if ``only_best`` (applied after the other filters)."""
        models = self.get_emodels()
        if seeds is not None:
            wanted = {int(s) for s in seeds}
            models = [m for m in models if m.seed in wanted]
        if only_validated:
            models = [m for m in models if m.validated]
        if only_best and models:
            models = [min(models, key=lambda m: m.score if m.score is not None else math.inf)]
        return models

    def _stored_exports(self, kind: str, only_validated: bool, only_best: bool,
                        seeds: list[int] | None) -> list[Path]:
        paths = []
        missing = []
        for model in self.select_models(only_validated, only_best, seeds):
            hoc = self.export_dir(kind, model.seed) / "model.hoc"
            (paths if hoc.is_file() else missing).append(hoc)
        if missing:
            raise StorageError(
                f"no {kind} export for: " + ", ".join(self._describe(p.parent) for p in missing)
                + " (run the export first)"
            )
        return paths

    def store_hocs(self, only_validated: bool = False, only_best: bool = True,
                   seeds: list[int] | None = None, map_function: Any = map,
                   new_emodel_name: str | None = None, description: str | None = None,
                   output_base_dir: str = "export_emodels_hoc") -> list[Path]:
        """Register exported hoc files. Locally the export already wrote them under the run
        root, so this checks they exist and returns their paths (the reference raises
        NotImplementedError)."""
        kind = "sonata" if output_base_dir == "export_emodels_sonata" else "hoc"
        return self._stored_exports(kind, only_validated, only_best, seeds)

    def store_emodels_hoc(self, only_validated: bool = False, only_best: bool = True,
                          seeds: list[int] | None = None, map_function: Any = map,
                          new_emodel_name: str | None = None,
                          description: str | None = None) -> list[Path]:
        """:meth:`store_hocs` for the hoc exports."""
        return self._stored_exports("hoc", only_validated, only_best, seeds)

    def store_emodels_sonata(self, only_validated: bool = False, only_best: bool = True,
                             seeds: list[int] | None = None, map_function: Any = map,
                             new_emodel_name: str | None = None,
                             description: str | None = None) -> list[Path]:
        """:meth:`store_hocs` for the SONATA exports."""
        return self._stored_exports("sonata", only_validated, only_best, seeds)


def _to_json(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in final.json")
