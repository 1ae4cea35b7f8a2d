"""Luigi tasks, targets and configuration of the pipeline.

Run with the plain ``luigi`` command, for example::

    luigi --module luigi_emodel.tasks EModelCreation --emodel L5PC --local-scheduler
"""

from __future__ import annotations

from luigi_emodel.tasks.config import EmodelAPIConfig, EvaluationBackendConfig
from luigi_emodel.tasks.plots import (
    PlotAll,
    PlotModels,
    PlotOptimisation,
    PlotParameterDistributions,
)
from luigi_emodel.tasks.targets import (
    BestModelTarget,
    FitnessConfigurationTarget,
    HocTarget,
    MechanismsTarget,
    OptimisationTarget,
    SonataTarget,
    ValidatedModelsTarget,
    ValidationTarget,
    access_point_for,
)
from luigi_emodel.tasks.workflow import (
    CompileMechanisms,
    EModelCreation,
    EModelCreationFailed,
    EModelTask,
    ExportHoc,
    ExportSonata,
    ExtractEFeatures,
    Optimise,
    OptimiseWrapper,
    SeveralEModelCreation,
    StopRequested,
    StoreBestModels,
    Validation,
)

__all__ = [
    "BestModelTarget",
    "CompileMechanisms",
    "EModelCreation",
    "EModelCreationFailed",
    "EModelTask",
    "EmodelAPIConfig",
    "EvaluationBackendConfig",
    "ExportHoc",
    "ExportSonata",
    "ExtractEFeatures",
    "FitnessConfigurationTarget",
    "HocTarget",
    "MechanismsTarget",
    "Optimise",
    "OptimisationTarget",
    "OptimiseWrapper",
    "PlotAll",
    "PlotModels",
    "PlotOptimisation",
    "PlotParameterDistributions",
    "SeveralEModelCreation",
    "SonataTarget",
    "StopRequested",
    "StoreBestModels",
    "ValidatedModelsTarget",
    "Validation",
    "ValidationTarget",
    "access_point_for",
]
