"""Validation: simulate stored models once more, now with the validation protocols, and judge.

Each stored model that has no verdict yet (``validated`` is null in final.json) is simulated
**once**, with every protocol (optimisation and validation ones). From that single evaluation
the entry receives

* ``features``: the value of every e-feature (mean over its values; null when missing);
* ``fitness``: the scores of the optimisation objectives (and so a fresh ``score``);
* ``validation_fitness``: the scores of the objectives on validation protocols only;
* ``threshold_data``: RMP, holding and threshold currents, input resistance found by the
  pre-protocols (empty for models without threshold-based protocols), so that the export
  and the figures reuse them instead of simulating again;
* ``validated``: the verdict of the pipeline's ``validation_function``.

Models that already have a verdict are left alone: calling :func:`validate` again simulates
nothing.

Validation functions (``pipeline_settings.validation_function``):

* ``"max_score"``: every score (optimisation and validation objectives) below
  ``validation_threshold``;
* ``"mean_score"``: the mean of those scores below ``validation_threshold``;
* ``[path, function]``: ``function`` of the Python file at ``path`` (relative to the run
  root), called as ``function(model, threshold, validation_protocols) -> bool`` with the
  updated :class:`~luigi_emodel.schemas.stored_model.StoredModel`, the threshold and the names
  of the validation protocols. (The reference passes a boolean "validation protocols only" as
  the third argument; the protocol names say more, and a function can still ignore them.)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from luigi_emodel.exceptions import ConfigurationError, StorageError
from luigi_emodel.schemas.stored_model import StoredModel
from luigi_emodel.science.evaluator import EModelEvaluator, EvaluationResult, build_evaluator

__all__ = [
    "ValidationFunction",
    "check_stored_parameters",
    "load_validation_function",
    "mean_score",
    "max_score",
    "validate",
]

logger = logging.getLogger(__name__)

#: ``function(model, threshold, validation_protocols) -> bool``.
ValidationFunction = Callable[[StoredModel, float, list[str]], bool]


def _all_scores(model: StoredModel) -> list[float]:
    scores = list(model.fitness.values()) + list(model.validation_fitness.values())
    # A missing score counts as failed: NaN never compares below a threshold.
    return [math.nan if s is None else float(s) for s in scores]


def max_score(model: StoredModel, threshold: float, validation_protocols: list[str]) -> bool:
    """True if every score of the model, validation objectives included, is below
    ``threshold``."""
    scores = _all_scores(model)
    return bool(scores) and all(s < threshold for s in scores)


def mean_score(model: StoredModel, threshold: float, validation_protocols: list[str]) -> bool:
    """True if the mean of all scores of the model is below ``threshold``."""
    scores = _all_scores(model)
    return bool(scores) and sum(scores) / len(scores) < threshold


def load_validation_function(access_point: Any) -> ValidationFunction:
    """The validation function named by the pipeline settings.

    Raises:
        ConfigurationError: a ``[path, function]`` whose file cannot be loaded or has no such
            callable; the message names the file and the function.
    """
    setting = access_point.pipeline_settings.validation_function
    if setting == "max_score" or not setting:
        return max_score
    if setting == "mean_score":
        return mean_score
    if isinstance(setting, str) or len(setting) != 2:
        raise ConfigurationError(
            f"pipeline_settings.validation_function: expected 'max_score', 'mean_score' or "
            f"[path, function], got {setting!r}"
        )
    path_text, name = setting
    path = access_point.resolve_input(path_text)
    where = f"pipeline_settings.validation_function: {path_text!r} (function {name!r})"
    if not path.is_file():
        raise ConfigurationError(f"{where}: file not found: {path}")
    # A private module name: the user's file must not shadow or replace a real module.
    module_name = "_luigi_emodel_validation_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"{where}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so that dataclasses and pickling inside it work
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # any error of user code is a configuration error
        sys.modules.pop(module_name, None)
        raise ConfigurationError(
            f"{where}: the file cannot be loaded: {type(error).__name__}: {error}"
        ) from None
    function = getattr(module, name, None)
    if function is None:
        raise ConfigurationError(f"{where}: the file defines no {name!r}")
    if not callable(function):
        raise ConfigurationError(f"{where}: {name!r} is not a function")
    return function  # type: ignore[no-any-return]


def _evaluate(evaluator: EModelEvaluator, parameters: dict[str, float]) -> EvaluationResult:
    """One model's evaluation (module-level so that process pools can pickle it)."""
    return evaluator.evaluate(parameters)


def check_stored_parameters(access_point: Any, model: StoredModel, names: list[str]) -> None:
    """Raise a StorageError if the stored ``model`` lacks any of the free parameters ``names``."""
    missing = [name for name in names if name not in model.parameters]
    if missing:
        raise StorageError(
            f"{access_point.final_store.name}: {model.key}.parameters: missing free "
            f"parameter(s) {missing} of the model configuration (the model was stored for "
            f"another configuration; restore that configuration or optimise again)"
        )


def _judge(function: ValidationFunction, model: StoredModel, threshold: float,
           protocols: list[str], setting: Any) -> bool:
    if function in (max_score, mean_score):
        return function(model, threshold, protocols)
    try:
        verdict = function(model, threshold, list(protocols))
    except Exception as error:  # user code
        raise ConfigurationError(
            f"pipeline_settings.validation_function: {setting!r} failed on {model.key}: "
            f"{type(error).__name__}: {error}"
        ) from error
    try:
        return bool(verdict)
    except Exception as error:  # e.g. a numpy array of several values
        raise ConfigurationError(
            f"pipeline_settings.validation_function: {setting!r} returned {verdict!r} for "
            f"{model.key}: expected True or False"
        ) from error


def validate(
    access_point: Any,
    seeds: Iterable[int] | None = None,
    map_function: Callable[..., Any] = map,
) -> list[StoredModel]:
    """Validate the stored models of ``seeds`` (default: all) that have no verdict yet.

    Args:
        access_point: the e-model's access point (settings, stored models, storage).
        seeds: only these seeds' models.
        map_function: runs the evaluations (one per model), e.g. ``map`` or a pool's map.

    Returns:
        The updated (and stored) models; empty if every model already had a verdict.

    Raises:
        ConfigurationError: a validation function that cannot be loaded or fails.
        StorageError: a stored model lacking a free parameter of the configuration.
    """
    settings = access_point.pipeline_settings
    models = access_point.select_models(
        only_validated=False, only_best=False,
        seeds=None if seeds is None else [int(s) for s in seeds],
    )
    models = [m for m in models if m.validated is None]
    if not models:
        logger.info("validation of %s: no model left to check", access_point.emodel_metadata.emodel)
        return []
    # Load the verdict function first: a bad one must fail before minutes of simulation.
    function = load_validation_function(access_point)
    evaluator = build_evaluator(access_point, include_validation=True)
    for model in models:
        check_stored_parameters(access_point, model, evaluator.param_names)
    validation_protocols = [p.name for p in evaluator.protocols if p.validation]
    validation_objectives = {
        f.name for f in evaluator.efeatures if f.protocol_name in set(validation_protocols)
    }
    logger.info("validating %d model(s) of %s", len(models), access_point.emodel_metadata.emodel)
    results = list(map_function(
        functools.partial(_evaluate, evaluator),
        [{k: m.parameters[k] for k in evaluator.param_names} for m in models],
    ))

    updated = []
    for model, result in zip(models, results):
        if result.failed:
            logger.warning("validation of %s: the evaluation failed (%s): every affected "
                           "objective scores max_score", model.key, result.failed)
        fitness = {k: v for k, v in result.scores.items() if k not in validation_objectives}
        checked = model.model_copy(update={
            "features": dict(result.features),
            "fitness": fitness,
            "score": float(sum(v for v in fitness.values() if v is not None)),
            "validation_fitness": {k: v for k, v in result.scores.items()
                                   if k in validation_objectives},
            "threshold_data": dict(result.threshold_data),
        })
        verdict = _judge(function, checked, settings.validation_threshold,
                         validation_protocols, settings.validation_function)
        checked = checked.model_copy(update={"validated": verdict})
        access_point.store_emodel(checked)
        logger.info("%s: validated=%s (score %.3g)", checked.key, verdict, checked.score)
        updated.append(checked)
    return updated
