"""The abstract access point: what every storage back-end offers the pipeline."""

from __future__ import annotations

import abc
from enum import Enum
from itertools import chain
from typing import Any

from luigi_emodel.schemas.metadata import EModelMetadata
from luigi_emodel.schemas.pipeline_settings import PipelineSettings

__all__ = ["DataAccessPoint", "OptimisationState"]


class OptimisationState(Enum):
    """Where the optimisation of one seed stands."""

    COMPLETED = "completed"  # the stop criterion was reached
    IN_PROGRESS = "in_progress"  # a checkpoint exists, the stop criterion was not reached
    EMPTY = "empty"  # no checkpoint


class DataAccessPoint(abc.ABC):
    """Storage of the configurations and results of e-models with given metadata.

    Args: the metadata of the e-model (see :class:`EModelMetadata`).
    """

    pipeline_settings: PipelineSettings

    def __init__(
        self,
        emodel: str | None = None,
        etype: str | None = None,
        ttype: str | None = None,
        mtype: str | None = None,
        species: str | None = None,
        brain_region: str | None = None,
        iteration_tag: str | None = None,
        synapse_class: str | None = None,
    ) -> None:
        self.emodel_metadata = EModelMetadata.model_validate({
            "emodel": emodel, "etype": etype, "ttype": ttype, "mtype": mtype,
            "species": species, "brain_region": brain_region, "iteration_tag": iteration_tag,
            "synapse_class": synapse_class,
        })

    def set_emodel(self, emodel: str) -> None:
        """Change the emodel name of this access point."""
        self.emodel_metadata.emodel = emodel

    def get_pipeline_settings(self) -> PipelineSettings:
        """The pipeline settings of this e-model.

        (The reference returns default settings here; the settings of the recipe are meant.)
        """
        return self.pipeline_settings

    # Methods the reference's base class defines as no-ops for back-ends that need them.
    def store_efeatures(self, efeatures: Any, current: Any) -> None:
        """No-op: local storage keeps e-features in the fitness-calculator configuration."""

    def store_protocols(self, stimuli: Any) -> None:
        """No-op: local storage keeps protocols in the fitness-calculator configuration."""

    def get_distributions(self) -> None:
        """No-op: distributions live in the model configuration."""

    def store_distribution(self, distribution: Any) -> None:
        """No-op: distributions live in the model configuration."""

    def download_mechanisms(self) -> None:
        """No-op: local mechanisms are already on disk."""

    def update_emodel_images(self, seed: int, keep_old_images: bool = False) -> None:
        """No-op: figures are written directly under the run root."""

    def get_available_traces(self, filter_species: bool = False,
                             filter_brain_region: bool = False) -> None:
        """No-op locally: traces are listed in the targets configuration."""

    def get_ion_currents_concentrations(self) -> tuple[list[str] | None, list[str] | None]:
        """Ion currents (plus ``i_pas``) and ionic concentrations of the available mechanisms."""
        mechanisms = self.get_available_mechanisms()
        if mechanisms is None:
            return None, None
        currents = list(dict.fromkeys(chain.from_iterable(
            (m.ion_currents or []) + (m.nonspecific_currents or []) for m in mechanisms
        )))
        concentrations = list(dict.fromkeys(chain.from_iterable(
            m.ionic_concentrations or [] for m in mechanisms
        )))
        currents.append("i_pas")
        return currents, concentrations

    # -- the storage contract ------------------------------------------------------------------

    @abc.abstractmethod
    def get_available_mechanisms(self) -> list[Any] | None:
        """Mechanisms (.mod files) available to the model."""

    @abc.abstractmethod
    def get_model_configuration(self, skip_get_available_morph: bool = False) -> Any:
        """The model configuration (mechanisms, distributions, parameters, morphology)."""

    @abc.abstractmethod
    def store_model_configuration(self, configuration: Any, path: Any = None) -> None:
        """Store a model configuration."""

    @abc.abstractmethod
    def get_fitness_calculator_configuration(self, record_ions_and_currents: bool = False) -> Any:
        """The e-features and protocols."""

    @abc.abstractmethod
    def store_fitness_calculator_configuration(self, configuration: Any) -> None:
        """Store the e-features and protocols."""

    @abc.abstractmethod
    def get_targets_configuration(self) -> Any:
        """The targets of the extraction."""

    @abc.abstractmethod
    def store_targets_configuration(self, configuration: Any) -> None:
        """Store the targets of the extraction."""

    @abc.abstractmethod
    def get_mechanisms_directory(self) -> Any:
        """Folder of the .mod files."""

    @abc.abstractmethod
    def store_emodel(self, emodel: Any) -> None:
        """Store an optimised model."""

    @abc.abstractmethod
    def get_emodel(self, lock_file: bool = True) -> Any:
        """The stored model of this e-model."""

    @abc.abstractmethod
    def get_emodels(self, emodels: list[str] | None = None) -> list[Any]:
        """Stored models of these e-models."""

    @abc.abstractmethod
    def get_emodel_names(self) -> dict[str, str]:
        """Stored model keys -> emodel names."""

    @abc.abstractmethod
    def has_best_model(self, seed: int) -> bool:
        """True once the best model of ``seed`` is stored."""

    @abc.abstractmethod
    def is_checked_by_validation(self, seed: int) -> bool:
        """True once the model of ``seed`` went through validation."""

    @abc.abstractmethod
    def is_validated(self) -> bool:
        """True once ``n_model`` models passed validation."""

    @abc.abstractmethod
    def sonata_exists(self, seed: int) -> bool:
        """True once the model of ``seed`` is exported in SONATA form."""

    @abc.abstractmethod
    def optimisation_state(self, seed: int | None = None,
                           continue_opt: bool = False) -> OptimisationState:
        """Where the optimisation of ``seed`` stands."""

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.emodel_metadata.as_string()})"
