"""Optimisation of one seed with BluePyOpt (IBEA, SO-CMA, MO-CMA), resumable and stoppable.

* **Checkpoints** live at the access point's ``checkpoint_path(seed)``. BluePyOpt writes its
  pickle non-atomically, so it writes into a staging file and this module commits each new
  generation into the real checkpoint with an atomic replace, together with a progress
  sidecar (generation, best score, whether the stop criterion was reached). A SIGKILL at any
  instant leaves the last committed generation intact.
* **Resume** is automatic. A CMA checkpoint keeps its stopping criterion and generation
  counter; before resuming, the counter moves to the next generation and the ``MaxNGen``
  criterion takes the current ``max_ngen``, so a resumed run equals an uninterrupted one and
  a raised ``max_ngen`` continues.
* **Stopping**: a ``stop_event`` (anything with ``is_set()``) checked at every generation
  boundary ends the run cleanly with a committed checkpoint; the run is then IN_PROGRESS.
* **Completion** is recorded only when the stop criterion is reached (never merely because
  a checkpoint exists).
"""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luigi_emodel.access_point._files import atomic_write_bytes
from luigi_emodel.access_point.base import OptimisationState
from luigi_emodel.exceptions import OptimisationError, StorageError
from luigi_emodel.science.evaluator import EModelEvaluator, build_evaluator

__all__ = [
    "OptimisationOutcome",
    "read_checkpoint",
    "run_optimisation",
    "split_evaluations",
    "store_best_model",
]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, float | None], None]


@dataclass
class OptimisationOutcome:
    """Where an optimisation ended."""

    generation: int
    max_ngen: int
    completed: bool
    best_score: float | None


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a BluePyOpt checkpoint (a pickle: only ever read from the run root)."""
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)  # noqa: S301 - the run root is trusted input
    except FileNotFoundError:
        raise StorageError(f"{path}: checkpoint not found") from None
    except Exception as error:  # a torn or foreign pickle
        raise StorageError(f"{path}: unreadable checkpoint: {type(error).__name__}: {error}") \
            from None


def _best_score(checkpoint: dict[str, Any]) -> float | None:
    halloffame = checkpoint.get("halloffame")
    if not halloffame:
        return None
    return float(sum(halloffame[0].fitness.values))


def split_evaluations(map_function: Callable[..., Any], evaluator: EModelEvaluator
                      ) -> Callable[..., Any]:
    """A map function that hands the workers one protocol of one individual at a time.

    The optimisers map ``evaluator.init_simulator_and_evaluate_with_lists`` over a generation
    and wait for the slowest evaluation before the next one; with few individuals per worker,
    a worker often idles while another finishes a long evaluation. Mapping the evaluator's
    independent parts (its protocols, :attr:`EModelEvaluator.parts`) instead makes the tasks
    several times shorter, and that wait with them. The scores are the same as those of whole
    evaluations (each protocol starts from rest), so the optimisation is too; the evaluation
    time limit (``optimisation_timeout``) then applies to each protocol. Other functions, and
    threshold-based evaluators (one part), are mapped as they come.
    """
    parts = evaluator.parts
    if parts <= 1:
        return map_function

    def split_map(func: Callable[[Any], Any], iterable: Any) -> list[Any]:
        # DEAP registers the evaluation as functools.partial(bound method).
        target = getattr(func, "func", func)
        if (getattr(target, "__self__", None) is not evaluator
                or getattr(target, "__name__", "") != "init_simulator_and_evaluate_with_lists"
                or getattr(func, "args", ()) or getattr(func, "keywords", None)):
            return map_function(func, iterable)
        individuals = [list(individual) for individual in iterable]
        outcomes = list(map_function(
            evaluator.evaluate_part,
            [(individual, index) for individual in individuals for index in range(parts)],
        ))
        return [evaluator.combine_parts(outcomes[start:start + parts])
                for start in range(0, len(outcomes), parts)]

    return split_map


def _create_optimiser(evaluator: EModelEvaluator, settings: Any, seed: int,
                      map_function: Callable[..., Any]) -> Any:
    import bluepyopt

    map_function = split_evaluations(map_function, evaluator)

    params = dict(settings.optimisation_params or {})
    offspring_size = int(params.pop("offspring_size", settings.offspring_size))
    if settings.optimiser == "IBEA":
        return bluepyopt.deapext.optimisations.IBEADEAPOptimisation(
            evaluator=evaluator, map_function=map_function, seed=seed,
            offspring_size=offspring_size, **params)
    selector = "single_objective" if settings.optimiser == "SO-CMA" else "multi_objective"
    return bluepyopt.deapext.optimisationsCMA.DEAPOptimisationCMA(
        evaluator=evaluator, map_function=map_function, seed=seed,
        offspring_size=offspring_size, selector_name=selector,
        use_stagnation_criterion=settings.use_stagnation_criterion, **params)


class _CommittingTerminator:
    """BluePyOpt's terminator: asked at every generation boundary, right after BluePyOpt has
    written its staging checkpoint. Commits that checkpoint atomically, reports progress, and
    says whether a stop was requested."""

    def __init__(self, staging: Path, commit: Callable[[], None],
                 stop_event: Any | None) -> None:
        self.staging = staging
        self.commit = commit
        self.stop_event = stop_event
        self.stop_requested = False

    def is_set(self) -> bool:
        self.commit()
        if self.stop_event is not None and self.stop_event.is_set():
            self.stop_requested = True
        return self.stop_requested


def run_optimisation(
    access_point: Any,
    seed: int,
    map_function: Callable[..., Any] = map,
    stop_event: Any | None = None,
    progress: ProgressCallback | None = None,
    evaluator: EModelEvaluator | None = None,
) -> OptimisationOutcome:
    """Optimise ``seed`` until its stop criterion, resuming from its checkpoint if any.

    Args:
        access_point: the e-model's access point (settings, paths, storage).
        seed: the optimisation seed (BluePyOpt's random seed).
        map_function: evaluates individuals (serial ``map`` or a backend's map).
        stop_event: stop cleanly at the next generation boundary when ``is_set()``.
        progress: called with (generation, max_ngen, best score) after every generation.
        evaluator: reuse an evaluator (default: built from the access point).

    Returns:
        Where the run ended; ``completed`` is False when it was stopped.
    """
    settings = access_point.pipeline_settings
    state = access_point.optimisation_state(seed=seed)
    if state is OptimisationState.COMPLETED:
        info = access_point.read_optimisation_progress(seed) or {}
        return OptimisationOutcome(int(info.get("generation", settings.max_ngen)),
                                   settings.max_ngen, True, info.get("best_score"))
    evaluator = evaluator or build_evaluator(access_point)
    checkpoint = access_point.checkpoint_path(seed)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    staging = checkpoint.with_name(checkpoint.stem + ".staging.pkl")
    cma = settings.optimiser != "IBEA"

    resume = checkpoint.is_file()
    if resume:
        data = read_checkpoint(checkpoint)
        _check_compatible(data, evaluator, checkpoint)
        if cma:
            _prepare_cma_resume(data, settings.max_ngen)
        atomic_write_bytes(staging, pickle.dumps(data))
    else:
        staging.unlink(missing_ok=True)

    last_committed: list[Any] = [None]

    def commit() -> None:
        try:
            stat = staging.stat()
        except FileNotFoundError:
            return
        key = (stat.st_mtime_ns, stat.st_size)
        if key == last_committed[0]:
            return
        raw = staging.read_bytes()
        data = pickle.loads(raw)  # noqa: S301 - written by this process a moment ago
        atomic_write_bytes(checkpoint, raw)
        generation = int(data["generation"])
        best = _best_score(data)
        access_point.store_optimisation_progress(seed, {
            "generation": generation, "max_ngen": settings.max_ngen,
            "optimiser": settings.optimiser, "offspring_size": settings.offspring_size,
            "best_score": best, "completed": False,
        })
        last_committed[0] = key
        if progress is not None:
            progress(generation, settings.max_ngen, best)

    terminator = _CommittingTerminator(staging, commit, stop_event)
    optimiser = _create_optimiser(evaluator, settings, seed, map_function)
    logger.info("optimising %s seed %s (%s, %s generations%s)",
                access_point.emodel_metadata.emodel, seed, settings.optimiser,
                settings.max_ngen, ", resumed" if resume else "")
    with warnings.catch_warnings():
        # BluePyOpt's CMA stagnation criterion takes medians of still-empty histories in the
        # first generations.
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        population, halloffame, logbook, history = optimiser.run(
            max_ngen=settings.max_ngen, cp_filename=str(staging), cp_frequency=1,
            continue_cp=resume, terminator=terminator,
        )
    if not staging.is_file() and not checkpoint.is_file() and not cma:
        # IBEA with max_ngen 1 evaluates the first population only, and BluePyOpt writes
        # checkpoints only after later generations: write the one it would have written.
        import random

        atomic_write_bytes(staging, pickle.dumps({
            "population": population, "generation": 1, "parents": population,
            "halloffame": halloffame, "history": history, "logbook": logbook,
            "rndstate": random.getstate(), "param_names": list(evaluator.param_names),
        }))
    commit()  # the last generation: BluePyOpt does not ask the terminator after it
    # BluePyOpt leaves its own temporary copy beside the staging file.
    Path(str(staging) + ".tmp").unlink(missing_ok=True)
    if not checkpoint.is_file():
        raise OptimisationError(f"{checkpoint}: the optimisation wrote no checkpoint")
    data = read_checkpoint(checkpoint)
    generation = int(data["generation"])
    completed, stopped_by = _stop_criterion(data, settings.max_ngen, cma)
    if terminator.stop_requested and not completed:
        logger.info("optimisation of seed %s stopped at generation %s on request", seed,
                    generation)
    best = _best_score(data)
    access_point.store_optimisation_progress(seed, {
        "generation": generation, "max_ngen": settings.max_ngen,
        "optimiser": settings.optimiser, "offspring_size": settings.offspring_size,
        "best_score": best, "completed": completed, "stopped_by": stopped_by,
    })
    staging.unlink(missing_ok=True)
    return OptimisationOutcome(generation, settings.max_ngen, completed, best)


def _stop_criterion(data: dict[str, Any], max_ngen: int, cma: bool) -> tuple[bool, str | None]:
    generation = int(data["generation"])
    if cma:
        strategy = data.get("CMA_es")
        if strategy is not None and not strategy.active:
            met = [c.name for c in strategy.stopping_conditions if c.criteria_met]
            return True, "max_ngen" if met == ["Max ngen"] else ",".join(met) or "criteria"
        return False, None
    if generation >= max_ngen:
        return True, "max_ngen"
    return False, None


def _check_compatible(data: dict[str, Any], evaluator: EModelEvaluator, path: Path) -> None:
    names = list(data.get("param_names") or [])
    if names != list(evaluator.param_names):
        raise OptimisationError(
            f"{path}: checkpoint of another configuration: its parameters "
            f"{names} differ from the current free parameters {evaluator.param_names}; "
            f"move the checkpoint away to start again"
        )


def _prepare_cma_resume(data: dict[str, Any], max_ngen: int) -> None:
    """Make a CMA checkpoint resume as an uninterrupted run would continue."""
    strategy = data["CMA_es"]
    # BluePyOpt restarts the loop at the checkpoint's generation number, which was already
    # run; an uninterrupted run would continue with the next one.
    data["generation"] = int(data["generation"]) + 1
    for condition in strategy.stopping_conditions:
        if condition.name == "Max ngen":
            condition.max_ngen = max_ngen
            if data["generation"] <= max_ngen:
                condition.criteria_met = False
    if not any(c.criteria_met for c in strategy.stopping_conditions):
        strategy.active = True


def store_best_model(access_point: Any, seed: int,
                     evaluator: EModelEvaluator | None = None) -> None:
    """Store the hall-of-fame best of ``seed``'s checkpoint in final.json.

    No simulation: the scores come from the optimisation itself. Features, validation scores
    and threshold data are filled by validation.

    Raises:
        OptimisationError: no checkpoint, or one whose parameters differ from the current
            configuration.
    """
    from luigi_emodel.schemas.stored_model import StoredModel

    checkpoint = access_point.checkpoint_path(seed)
    if not checkpoint.is_file():
        raise OptimisationError(f"{checkpoint}: no checkpoint for seed {seed}: optimise first")
    data = read_checkpoint(checkpoint)
    evaluator = evaluator or build_evaluator(access_point, compile_if_needed=False)
    _check_compatible(data, evaluator, checkpoint)
    if not data.get("halloffame"):
        raise OptimisationError(f"{checkpoint}: empty hall of fame")
    best = data["halloffame"][0]
    parameters = dict(zip(evaluator.param_names, (float(v) for v in best)))
    fitness = dict(zip(evaluator.objective_names, (float(v) for v in best.fitness.values)))
    model = StoredModel.from_result(access_point.emodel_metadata, seed, parameters, fitness)
    access_point.store_emodel(model)
