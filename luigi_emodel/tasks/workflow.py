"""The tasks of the pipeline. Each ``run()`` is one science call; completeness is decided by
the targets (:mod:`luigi_emodel.tasks.targets`), i.e. by the access point.

    ExtractEFeatures ─┐
    CompileMechanisms ┴─▶ Optimise(seed) ─▶ StoreBestModels(seeds) ─▶ Validation(seeds)
        ─▶ ExportSonata(seed), ExportHoc(seed)

``EModelCreation`` runs batches of ``optimisation_batch_size`` seeds until ``n_model`` models
are validated or ``max_n_batch`` batches are spent, then exports the validated models.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import luigi
import luigi.rpc

from luigi_emodel.exceptions import ConfigurationError, OptimisationError
from luigi_emodel.tasks.config import checked_backend_config
from luigi_emodel.tasks.targets import (
    METADATA_FIELDS,
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

__all__ = [
    "CompileMechanisms",
    "EModelCreation",
    "EModelCreationFailed",
    "EModelTask",
    "ExportHoc",
    "ExportSonata",
    "ExtractEFeatures",
    "Optimise",
    "OptimiseWrapper",
    "SeveralEModelCreation",
    "StopRequested",
    "StoreBestModels",
    "Validation",
    "stop_event",
]

logger = logging.getLogger(__name__)
# Luigi configures this logger for the console: progress lines shown to the user go there.
console = logging.getLogger("luigi-interface")

#: Set by SIGTERM or SIGUSR1: running optimisations stop at their next generation boundary.
stop_event = threading.Event()


class StopRequested(OptimisationError):
    """An optimisation stopped on request (SIGTERM / SIGUSR1); its checkpoint is kept."""


class EModelCreationFailed(OptimisationError):
    """All batches were spent without enough validated models."""


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """While a task runs, SIGTERM and SIGUSR1 request a clean stop (and luigi's own SIGUSR1
    handler, which stops the worker from asking for more work, still runs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        logger.warning("signal %s: stopping at the next generation boundary", signum)
        stop_event.set()
        chained = previous.get(signum)
        if signum == signal.SIGUSR1 and callable(chained):
            chained(signum, frame)

    for signum in (signal.SIGTERM, signal.SIGUSR1):
        previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def _map_function() -> Iterator[Any]:
    from luigi_emodel.science.mappers import map_backend

    config = checked_backend_config()
    with map_backend(config.backend, config.workers,
                     ipyparallel_profile=config.ipyparallel_profile,
                     dask_scheduler=config.dask_scheduler) as mapper:
        yield mapper


class _IntParameter(luigi.IntParameter):
    """An integer parameter whose parse error names it: luigi's own says only "invalid
    literal for int() with base 10: 'abc'", with no hint of which option was wrong."""

    def __init__(self, *args: Any, field: str = "seed", **kwargs: Any) -> None:
        self._field = field
        super().__init__(*args, **kwargs)

    def parse(self, x: Any) -> int:
        try:
            return int(x)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"--{self._field.replace('_', '-')}: expected an integer, got {x!r}"
            ) from None


# Created before the other metadata parameters: luigi orders parameters by creation, and the
# emodel name reads best first in task names and logs.
_EMODEL = luigi.Parameter(description="Name of the e-model (a recipe of recipes.json).")


class _SharedMetadata(luigi.Task):
    """The metadata parameters besides the emodel name (shared by several e-models)."""

    etype = luigi.OptionalParameter(default=None)
    ttype = luigi.OptionalParameter(default=None)
    mtype = luigi.OptionalParameter(default=None)
    species = luigi.OptionalParameter(default=None)
    brain_region = luigi.OptionalParameter(default=None)
    iteration_tag = luigi.OptionalParameter(default=None)


class EModelTask(_SharedMetadata):
    """A task about one e-model: the metadata parameters every task carries."""

    emodel = _EMODEL

    @property
    def metadata(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in METADATA_FIELDS}

    @property
    def access_point(self) -> Any:
        return access_point_for(**self.metadata)

    def clone_for(self, cls: type[luigi.Task], **kwargs: Any) -> Any:
        return cls(**self.metadata, **kwargs)


class ExtractEFeatures(EModelTask):
    """Recordings + targets configuration -> the fitness-calculator configuration."""

    def output(self) -> FitnessConfigurationTarget:
        return FitnessConfigurationTarget(**self.metadata)

    def run(self) -> None:
        access_point = self.access_point
        if not access_point.has_targets_configuration():
            raise ConfigurationError(
                f"{access_point.get_json_path('features')}: no e-features file, and no targets "
                f"configuration (pipeline_settings.path_extract_config) to extract them from"
            )
        from luigi_emodel.science.extraction import extract_save_features_protocols

        extract_save_features_protocols(access_point)


class CompileMechanisms(EModelTask):
    """Compile the run root's .mod files (idempotent, one compilation at a time)."""

    def output(self) -> MechanismsTarget:
        return MechanismsTarget(**self.metadata)

    def run(self) -> None:
        from luigi_emodel.science.mechanisms import compile_mechanisms

        compile_mechanisms(self.access_point)


class Optimise(EModelTask):
    """Optimise one seed to its stop criterion, resuming from its checkpoint.

    Reports ``generation k / max_ngen`` and the best score to the scheduler. SIGTERM or
    SIGUSR1 stops it at the next generation boundary; the task then fails, and the next run
    resumes from the checkpoint.
    """

    seed = _IntParameter(default=1)

    def requires(self) -> list[luigi.Task]:
        return [self.clone_for(ExtractEFeatures), self.clone_for(CompileMechanisms)]

    def output(self) -> OptimisationTarget:
        return OptimisationTarget(self.seed, **self.metadata)

    def _progress(self, generation: int, max_ngen: int, best: float | None) -> None:
        score = "n/a" if best is None else f"{best:.4g}"
        message = f"seed {self.seed}: generation {generation}/{max_ngen}, best score {score}"
        console.info(message)
        # Progress shown by luigid is a courtesy: a scheduler that is down or restarting
        # (luigi's RPC gives up after [core] rpc_retry_attempts x rpc_retry_wait) must not
        # fail an optimisation that is otherwise fine; its checkpoint is what counts.
        try:
            self.set_status_message(message)
            self.set_progress_percentage(round(100 * min(generation, max_ngen) / max_ngen))
        except (luigi.rpc.RPCError, OSError, ValueError) as error:
            logger.warning("seed %s: progress not sent to the scheduler: %s", self.seed, error)

    def run(self) -> None:
        from luigi_emodel.science.optimisation import run_optimisation

        if stop_event.is_set():
            raise StopRequested(f"seed {self.seed}: not started, a stop was requested")
        with _stop_on_signals(), _map_function() as mapper:
            outcome = run_optimisation(self.access_point, self.seed, map_function=mapper,
                                       stop_event=stop_event, progress=self._progress)
        if not outcome.completed:
            raise StopRequested(
                f"seed {self.seed}: stopped on request at generation {outcome.generation}/"
                f"{outcome.max_ngen}; the checkpoint is kept and the next run resumes from it"
            )


class OptimiseWrapper(EModelTask):
    """Optimise seeds ``seed .. seed + batch_size - 1`` (no storage, no validation)."""

    seed = _IntParameter(default=1)
    batch_size = _IntParameter(default=1, field="batch_size")

    def requires(self) -> list[Optimise]:
        return [self.clone_for(Optimise, seed=s)
                for s in range(self.seed, self.seed + self.batch_size)]

    def complete(self) -> bool:
        return all(task.complete() for task in self.requires())


class StoreBestModels(EModelTask):
    """Store the best model of each seed of a batch in final.json (no simulation)."""

    seeds = luigi.ListParameter()

    def requires(self) -> list[Optimise]:
        return [self.clone_for(Optimise, seed=s) for s in self.seeds]

    def output(self) -> list[BestModelTarget]:
        return [BestModelTarget(s, **self.metadata) for s in self.seeds]

    def run(self) -> None:
        from luigi_emodel.science.optimisation import store_best_model

        for seed, target in zip(self.seeds, self.output()):
            if not target.exists():
                store_best_model(self.access_point, int(seed))


class Validation(EModelTask):
    """Validate the stored models of a batch of seeds (each simulated once)."""

    seeds = luigi.ListParameter()

    def requires(self) -> StoreBestModels:
        return self.clone_for(StoreBestModels, seeds=self.seeds)

    def output(self) -> list[ValidationTarget]:
        return [ValidationTarget(s, **self.metadata) for s in self.seeds]

    def run(self) -> None:
        from luigi_emodel.science.validation import validate

        with _map_function() as mapper:
            validate(self.access_point, seeds=[int(s) for s in self.seeds], map_function=mapper)


class _ExportTask(EModelTask):
    seed = _IntParameter()

    def requires(self) -> Validation:
        return self.clone_for(Validation, seeds=[self.seed])


class ExportSonata(_ExportTask):
    """Export the model of ``seed`` as hoc + morphology + SONATA nodes.h5."""

    def output(self) -> SonataTarget:
        return SonataTarget(self.seed, **self.metadata)

    def run(self) -> None:
        from luigi_emodel.science.export import export_sonata

        export_sonata(self.access_point, seeds=[self.seed])


class ExportHoc(_ExportTask):
    """Export the model of ``seed`` as a hoc template + morphology."""

    def output(self) -> HocTarget:
        return HocTarget(self.seed, **self.metadata)

    def run(self) -> None:
        from luigi_emodel.science.export import export_hoc

        export_hoc(self.access_point, seeds=[self.seed])


class EModelCreation(EModelTask):
    """Batches of seeds until ``n_model`` models are validated (then exported), or
    ``max_n_batch`` batches are spent — then it fails, saying how many passed."""

    seed = _IntParameter(default=1, description="First seed of the first batch.")

    def output(self) -> ValidatedModelsTarget:
        return ValidatedModelsTarget(**self.metadata)

    def requires(self) -> Validation:
        # The first batch is always needed: declaring it statically lets every worker that
        # schedules this task (several luigi processes on one luigid) run its optimisations
        # in parallel. Later batches, needed only if too few models pass, are dynamic.
        return self.clone_for(Validation, seeds=self.batch_seeds(0))

    def batch_seeds(self, batch: int) -> list[int]:
        size = self.access_point.pipeline_settings.optimisation_batch_size
        start = self.seed + batch * size
        return list(range(start, start + size))

    def run(self) -> Iterator[Any]:
        access_point = self.access_point
        settings = access_point.pipeline_settings
        tried: list[int] = []
        for batch in range(settings.max_n_batch):
            if access_point.is_validated():
                break
            seeds = self.batch_seeds(batch)
            yield self.clone_for(Validation, seeds=seeds)
            tried += seeds
        if not access_point.is_validated():
            validated, checked = access_point.count_validated(seeds=tried)
            raise EModelCreationFailed(
                f"{access_point.emodel_metadata.emodel}: {validated} validated of {checked} "
                f"models tried in {settings.max_n_batch} batches of "
                f"{settings.optimisation_batch_size}; {settings.n_model} needed"
            )
        validated = access_point.select_models(only_validated=True, only_best=False)
        yield [self.clone_for(ExportSonata, seed=m.seed) for m in validated]


class SeveralEModelCreation(_SharedMetadata, luigi.WrapperTask):
    """``EModelCreation`` of several e-models sharing the other metadata."""

    emodels = luigi.ListParameter(description="Names of the e-models, e.g. '[\"L5PC\", \"L23\"]'.")
    seed = _IntParameter(default=1)

    def requires(self) -> list[EModelCreation]:
        return [
            EModelCreation(emodel=e, etype=self.etype, ttype=self.ttype, mtype=self.mtype,
                           species=self.species, brain_region=self.brain_region,
                           iteration_tag=self.iteration_tag, seed=self.seed)
            for e in self.emodels
        ]
