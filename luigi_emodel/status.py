"""Where the e-models of a run root stand: one row per seed, for ``luigi-emodel status``.

Everything comes from an access point and is read only, so that a status can be taken while
a run is writing to the same run root:

* the seeds are those with a checkpoint in the e-model's checkpoint folder (found by file
  name, ``...__seed=<n>.pkl``) and those with a final.json entry of this e-model, iteration
  and metadata;
* the optimisation state comes from the checkpoint's progress sidecar (written atomically
  beside it); checkpoints themselves are never unpickled here, as they may be in the middle
  of a replacement and are not needed;
* the score, the validation verdict and the SONATA export come from final.json and the
  export folder.

No Luigi here: :mod:`luigi_emodel.cli` builds the access points and prints the rows.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from luigi_emodel.access_point.base import OptimisationState
from luigi_emodel.exceptions import StorageError

__all__ = [
    "EModelStatus",
    "SeedStatus",
    "checkpoint_seeds",
    "emodel_status",
    "format_status",
]

#: A checkpoint file name: ``<metadata>__seed=<n>.pkl`` (staging and temporary files of a
#: running optimisation end differently and are not matched).
_CHECKPOINT_NAME = re.compile(r"__seed=(-?\d+)\.pkl$")

#: Column titles of the table, in order.
COLUMNS = ("seed", "optimisation", "best score", "validated", "exported (SONATA)")


@dataclass
class SeedStatus:
    """Where one seed of one e-model stands.

    Attributes:
        seed: the optimisation seed.
        state: ``completed``, ``in_progress`` or ``empty`` (no checkpoint).
        generation: the last generation committed to the checkpoint (None when unknown).
        max_ngen: the current ``pipeline_settings.max_ngen``.
        optimisation_best_score: the best score the optimisation reported (None if none).
        stored: True if final.json holds this seed's model.
        stored_score: the score of the stored model (None if not stored).
        validated: the validation verdict (None when not checked or not stored).
        exported_sonata: True if the SONATA export of the seed exists.
        note: why a value is missing (e.g. an unreadable progress file), else None.
    """

    seed: int
    state: str
    generation: int | None
    max_ngen: int
    optimisation_best_score: float | None
    stored: bool
    stored_score: float | None
    validated: bool | None
    exported_sonata: bool
    note: str | None = None

    @property
    def optimisation(self) -> str:
        """``done``, ``generation k/max_ngen`` (``?`` when unknown) or ``not started``."""
        if self.state == OptimisationState.COMPLETED.value:
            return "done"
        if self.state == OptimisationState.EMPTY.value:
            return "not started"
        generation = "?" if self.generation is None else str(self.generation)
        return f"generation {generation}/{self.max_ngen}"

    @property
    def best_score(self) -> float | None:
        """The stored model's score when there is one (validation re-scores it), else the
        optimisation's best."""
        return self.stored_score if self.stored_score is not None \
            else self.optimisation_best_score

    @property
    def validation(self) -> str:
        """``yes``, ``no`` or ``not checked``."""
        if self.validated is None:
            return "not checked"
        return "yes" if self.validated else "no"

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values (non-finite scores become null)."""
        fields = asdict(self)
        data = {"seed": self.seed, "optimisation": self.optimisation,
                "best_score": _finite_or_none(self.best_score)}
        data.update((key, value) for key, value in fields.items() if key != "seed")
        for key in ("optimisation_best_score", "stored_score"):
            data[key] = _finite_or_none(data[key])
        return data


@dataclass
class EModelStatus:
    """The seeds of one e-model and iteration, with the validation summary.

    Attributes:
        emodel: the e-model name.
        iteration: the iteration tag (None when not given).
        run_root: the run root, absolute.
        n_model: how many validated models the pipeline needs.
        seeds: one row per seed, by seed.
        ignored_checkpoints: checkpoints of the folder whose metadata (etype, mtype, species,
            brain region...) differ from the ones asked for.
    """

    emodel: str
    iteration: str | None
    run_root: str
    n_model: int
    seeds: list[SeedStatus] = field(default_factory=list)
    ignored_checkpoints: int = 0

    @property
    def n_validated(self) -> int:
        """Stored models that passed validation."""
        return sum(row.validated is True for row in self.seeds)

    @property
    def n_checked(self) -> int:
        """Stored models that have a validation verdict."""
        return sum(row.validated is not None for row in self.seeds)

    @property
    def summary(self) -> str:
        """``N validated of M checked (n_model needed)``."""
        return f"{self.n_validated} validated of {self.n_checked} checked ({self.n_model} needed)"

    def as_dict(self) -> dict[str, Any]:
        """The e-model's status as JSON-ready values; each row repeats emodel and iteration
        so that rows stand alone."""
        return {
            "emodel": self.emodel,
            "iteration": self.iteration,
            "run_root": self.run_root,
            "n_model": self.n_model,
            "n_validated": self.n_validated,
            "n_checked": self.n_checked,
            "ignored_checkpoints": self.ignored_checkpoints,
            "seeds": [
                {"emodel": self.emodel, "iteration": self.iteration, **row.as_dict()}
                for row in self.seeds
            ],
        }


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def checkpoint_seeds(access_point: Any) -> tuple[list[int], int]:
    """The seeds with a checkpoint of this access point's e-model, iteration and metadata.

    The folder comes from the access point (``checkpoint_path(seed).parent``); a file counts
    only when its whole name is the one the access point gives its seed, so checkpoints of
    other metadata sharing the folder are left out (and counted).

    Returns:
        (sorted seeds, number of checkpoints of other metadata).
    """
    folder = access_point.checkpoint_path(1).parent
    seeds: set[int] = set()
    ignored = 0
    try:
        names = [entry.name for entry in folder.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return [], 0
    for name in names:
        if name.startswith("."):  # temporary files of atomic writes
            continue
        match = _CHECKPOINT_NAME.search(name)
        if match is None:
            continue
        seed = int(match.group(1))
        if access_point.checkpoint_path(seed).name == name:
            seeds.add(seed)
        else:
            ignored += 1
    return sorted(seeds), ignored


def _seed_row(access_point: Any, seed: int, stored: Any | None) -> SeedStatus:
    max_ngen = access_point.pipeline_settings.max_ngen
    note = None
    try:
        progress = access_point.read_optimisation_progress(seed) or {}
        state = access_point.optimisation_state(seed=seed).value
    except StorageError as error:
        # A sidecar is replaced atomically, so this is a damaged file, not a write in
        # progress: report it on the row and go on with the others.
        progress = {}
        state = (OptimisationState.IN_PROGRESS if access_point.checkpoint_path(seed).is_file()
                 else OptimisationState.EMPTY).value
        note = str(error)
    generation = progress.get("generation")
    return SeedStatus(
        seed=seed,
        state=state,
        generation=int(generation) if isinstance(generation, (int, float)) else None,
        max_ngen=max_ngen,
        optimisation_best_score=_finite_or_none(progress.get("best_score"))
        if isinstance(progress.get("best_score"), (int, float)) else None,
        stored=stored is not None,
        stored_score=None if stored is None else stored.score,
        validated=None if stored is None else stored.validated,
        exported_sonata=access_point.sonata_exists(seed),
        note=note,
    )


def emodel_status(access_point: Any) -> EModelStatus:
    """The status of the access point's e-model and iteration: one row per seed found."""
    metadata = access_point.emodel_metadata
    stored = {model.seed: model for model in access_point.get_emodels()}
    seeds, ignored = checkpoint_seeds(access_point)
    rows = [_seed_row(access_point, seed, stored.get(seed))
            for seed in sorted(set(seeds) | set(stored))]
    return EModelStatus(
        emodel=metadata.emodel,
        iteration=metadata.iteration,
        run_root=str(access_point.run_root),
        n_model=access_point.pipeline_settings.n_model,
        seeds=rows,
        ignored_checkpoints=ignored,
    )


def format_status(status: EModelStatus) -> str:
    """The status as a text table: a title, one line per seed, the summary line."""
    title = f"{status.emodel} (iteration {status.iteration or 'none'}, run root " \
            f"{status.run_root})"
    rows = [
        (str(row.seed), row.optimisation,
         "-" if row.best_score is None else f"{row.best_score:.4g}",
         row.validation, "yes" if row.exported_sonata else "no")
        for row in status.seeds
    ]
    widths = [max([len(title_)] + [len(r[i]) for r in rows]) for i, title_ in enumerate(COLUMNS)]

    def line(cells: tuple[str, ...]) -> str:
        # Numbers right-aligned, words left-aligned.
        parts = [cell.rjust(width) if i in (0, 2) else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    lines = [title, line(COLUMNS)]
    lines += [line(r) for r in rows] if rows else ["(no seed found: no checkpoint and no "
                                                   "stored model)"]
    lines += [f"note: seed {row.seed}: {row.note}" for row in status.seeds if row.note]
    if status.ignored_checkpoints:
        lines.append(f"note: {status.ignored_checkpoints} checkpoint(s) of other metadata "
                     f"(etype, mtype, species, brain region) left out")
    lines.append(status.summary)
    return "\n".join(lines)
