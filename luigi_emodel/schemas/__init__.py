"""Pydantic models of every file the pipeline reads or writes. No I/O here.

Each module holds one file kind; :data:`FILE_KINDS` maps the kind names used by
``luigi-emodel schema DIR`` to their top-level model.
"""

from __future__ import annotations

from pydantic import BaseModel

from luigi_emodel.schemas._base import StrictModel, parse_model
from luigi_emodel.schemas.fitness_configuration import (
    EFeatureConfig,
    FitnessCalculatorConfiguration,
    ProtocolConfig,
    RecordingConfig,
)
from luigi_emodel.schemas.metadata import EModelMetadata
from luigi_emodel.schemas.model_configuration import (
    DistributionConfig,
    MechanismConfig,
    ModelConfiguration,
    MorphologyConfig,
    ParameterConfig,
)
from luigi_emodel.schemas.pipeline_settings import PipelineSettings
from luigi_emodel.schemas.recipes import Recipe
from luigi_emodel.schemas.stored_model import StoredModel, final_key
from luigi_emodel.schemas.targets_configuration import (
    TargetConfig,
    TargetsConfiguration,
    TraceFileConfig,
)
from luigi_emodel.schemas.workflow import EModelWorkflow

__all__ = [
    "FILE_KINDS",
    "DistributionConfig",
    "EFeatureConfig",
    "EModelMetadata",
    "EModelWorkflow",
    "FitnessCalculatorConfiguration",
    "MechanismConfig",
    "ModelConfiguration",
    "MorphologyConfig",
    "ParameterConfig",
    "PipelineSettings",
    "ProtocolConfig",
    "Recipe",
    "RecordingConfig",
    "StoredModel",
    "StrictModel",
    "TargetConfig",
    "TargetsConfiguration",
    "TraceFileConfig",
    "final_key",
    "parse_model",
]

#: File kind -> schema of one document (recipes.json and final.json map names to these).
FILE_KINDS: dict[str, type[BaseModel]] = {
    "recipe": Recipe,
    "pipeline_settings": PipelineSettings,
    "model_configuration": ModelConfiguration,
    "fitness_calculator_configuration": FitnessCalculatorConfiguration,
    "targets_configuration": TargetsConfiguration,
    "stored_model": StoredModel,
    "metadata": EModelMetadata,
}
