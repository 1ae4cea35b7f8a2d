"""luigi_emodel: electrical models (e-models) of neurons built as a Luigi workflow.

Recordings -> e-features -> optimised parameters (several seeds) -> validated models ->
exported hoc and SONATA, every input and result kept in plain files through
:class:`LocalAccessPoint`. Pipeline runs use the ``luigi`` command with
``--module luigi_emodel.tasks``.
"""

from __future__ import annotations

from luigi_emodel.access_point import (
    DataAccessPoint,
    FinalStore,
    LocalAccessPoint,
    OptimisationState,
    get_access_point,
)
from luigi_emodel.exceptions import (
    ConfigurationError,
    EModelError,
    EvaluationError,
    ExtractionError,
    MechanismError,
    MissingFileError,
    OptimisationError,
    StorageError,
    UnknownEModelError,
)
from luigi_emodel.schemas import (
    EModelMetadata,
    FitnessCalculatorConfiguration,
    ModelConfiguration,
    PipelineSettings,
    StoredModel,
    TargetsConfiguration,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "DataAccessPoint",
    "EModelError",
    "EModelMetadata",
    "EvaluationError",
    "ExtractionError",
    "FinalStore",
    "FitnessCalculatorConfiguration",
    "LocalAccessPoint",
    "MechanismError",
    "MissingFileError",
    "ModelConfiguration",
    "OptimisationError",
    "OptimisationState",
    "PipelineSettings",
    "StorageError",
    "StoredModel",
    "TargetsConfiguration",
    "UnknownEModelError",
    "__version__",
    "get_access_point",
]
