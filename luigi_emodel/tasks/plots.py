"""Figure tasks: side outputs of the pipeline, never prerequisites of validation or export.

    Optimise(seed) ──────────▶ PlotOptimisation(seed)
    Validation(seeds) ───────▶ PlotModels(seeds)            (traces + scores of each seed)
    EModelCreation ──────────▶ PlotParameterDistributions
    PlotAll(seed): the three above for the seeds of EModelCreation's first batch, and for
    any later batch's seeds that have a stored model once EModelCreation is done.

Each ``run()`` is one science call (:mod:`luigi_emodel.science.plotting`). Outputs are the
PNG files at the access point's ``figure_path(kind, seed, "png")`` (the PDF beside it is
written first). A figure whose pipeline setting is off (``plot_optimisation``,
``plot_traces``, ``plot_scores``, ``plot_distributions``) is not an output: a task whose
figures are all off is complete without writing anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import luigi

from luigi_emodel.science.plotting import figure_enabled
from luigi_emodel.tasks.workflow import EModelCreation, EModelTask, Optimise, Validation

__all__ = ["PlotAll", "PlotModels", "PlotOptimisation", "PlotParameterDistributions"]


class _PlotTask(EModelTask):
    """A task whose outputs are the PNG files of its enabled figures."""

    def figures(self) -> list[tuple[str, int | None]]:
        """(kind, seed) of every figure this task draws, enabled or not."""
        raise NotImplementedError

    def output(self) -> list[luigi.LocalTarget]:
        access_point = self.access_point
        return [luigi.LocalTarget(str(access_point.figure_path(kind, seed, "png")))
                for kind, seed in self.figures() if figure_enabled(access_point, kind)]

    def complete(self) -> bool:
        # Without enabled figures there is nothing to do (luigi's default would call a task
        # without outputs never complete).
        return all(target.exists() for target in self.output())


class PlotOptimisation(_PlotTask):
    """Convergence of the optimisation of ``seed`` (best and mean score per generation)."""

    seed = luigi.IntParameter(default=1)

    def requires(self) -> Optimise:
        return self.clone_for(Optimise, seed=self.seed)

    def figures(self) -> list[tuple[str, int | None]]:
        return [("optimisation", self.seed)]

    def run(self) -> None:
        from luigi_emodel.science.plotting import plot_optimisation

        plot_optimisation(self.access_point, self.seed)


class PlotModels(_PlotTask):
    """Traces (one simulation per model) and scores of the validated models of ``seeds``."""

    seeds = luigi.ListParameter()

    def requires(self) -> Validation:
        return self.clone_for(Validation, seeds=self.seeds)

    def figures(self) -> list[tuple[str, int | None]]:
        return [(kind, int(seed)) for seed in self.seeds for kind in ("traces", "scores")]

    def run(self) -> None:
        from luigi_emodel.science.plotting import plot_scores, plot_traces

        access_point = self.access_point
        for seed in self.seeds:
            plot_traces(access_point, int(seed))
            plot_scores(access_point, int(seed))


class PlotParameterDistributions(_PlotTask):
    """Free parameters of every stored model against their bounds, once the e-model is
    created (``EModelCreation`` from ``seed``)."""

    seed = luigi.IntParameter(default=1, description="First seed of EModelCreation.")

    def requires(self) -> EModelCreation:
        return self.clone_for(EModelCreation, seed=self.seed)

    def figures(self) -> list[tuple[str, int | None]]:
        return [("parameters_distribution", None)]

    def run(self) -> None:
        from luigi_emodel.science.plotting import plot_parameter_distributions

        plot_parameter_distributions(self.access_point)


class PlotAll(EModelTask):
    """Every figure of the e-model: optimisation and model figures of the seeds of
    ``EModelCreation``'s first batch (known before anything runs, so they run beside the
    rest of the pipeline) and the parameter distributions; then, once the e-model is created,
    the same figures for the seeds of later batches that stored a model."""

    seed = luigi.IntParameter(default=1, description="First seed of EModelCreation.")

    def _creation(self) -> EModelCreation:
        return self.clone_for(EModelCreation, seed=self.seed)

    def _first_batch(self) -> list[int]:
        return self._creation().batch_seeds(0)

    def _seed_tasks(self, seeds: list[int]) -> list[luigi.Task]:
        if not seeds:
            return []
        return [*(self.clone_for(PlotOptimisation, seed=s) for s in seeds),
                self.clone_for(PlotModels, seeds=seeds)]

    def requires(self) -> list[luigi.Task]:
        return [*self._seed_tasks(self._first_batch()),
                self.clone_for(PlotParameterDistributions, seed=self.seed)]

    def _later_seeds(self) -> list[int]:
        """Seeds of EModelCreation's later batches that stored a model (known only once it
        has run them)."""
        creation = self._creation()
        later = {s for batch in range(1, self.access_point.pipeline_settings.max_n_batch)
                 for s in creation.batch_seeds(batch)}
        models = self.access_point.select_models(only_validated=False, only_best=False)
        return sorted(later & {m.seed for m in models})

    def complete(self) -> bool:
        if not all(task.complete() for task in self.requires()):
            return False
        return all(task.complete() for task in self._seed_tasks(self._later_seeds()))

    def run(self) -> Iterator[Any]:
        later = self._later_seeds()
        if later:
            yield self._seed_tasks(later)
