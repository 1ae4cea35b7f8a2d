"""Export of stored models: a hoc template, and a SONATA node file for circuit simulators.

Both exports read only what final.json holds; they never simulate. The hoc template is
BluePyOpt's ``create_hoc`` of the cell model with the configuration's frozen values and the
stored free values; its template name is the emodel name and it is instantiated as
``<emodel>(morphology_dir, morphology_file_name)``. It does not set ``v_init`` and
``celsius``: a simulation sets them and may call ``check_simulator()`` to confirm them.

Folders (``export_dir(kind, seed)`` of the access point)::

    export_emodels_hoc/<as_string(seed)>/      model.hoc, <morphology file>
    export_emodels_sonata/<as_string(seed)>/   model.hoc, <morphology file>, nodes.h5

A folder is written complete or not at all: its files are written into a hidden staging
folder beside it, which then takes the folder's place with ``os.replace``. An export killed
half-way leaves at most a hidden ``.staging-*`` folder beside the exports, never a
``model.hoc`` without its morphology or node file (``sonata_exists`` looks at model.hoc).
Staging folders are named after the host and process that write them; the next export into
the same folder deletes those left by processes of its host that no longer run.

nodes.h5 holds one population, ``<brain_region or "default">_neurons``, of one node at the
origin with the identity rotation, as the SONATA specification lays it out (node type, group
id and group index datasets included, so that libsonata reads it).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from luigi_emodel.access_point._files import fsync_file, fsync_folder
from luigi_emodel.exceptions import ConfigurationError, StorageError
from luigi_emodel.schemas.stored_model import StoredModel
from luigi_emodel.science.validation import check_stored_parameters

__all__ = [
    "export_hoc",
    "export_sonata",
    "population_name",
    "write_hoc",
    "write_nodes_file",
]

logger = logging.getLogger(__name__)

HOC_FILE = "model.hoc"
NODES_FILE = "nodes.h5"
_STAGING_PREFIX = ".staging-"
_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"


def _staging_prefix(what: str) -> str:
    """``.staging-<what>@<host>@<pid>@``: whose folder it is, for :func:`_remove_stale`."""
    return f"{_STAGING_PREFIX}{what}@{_HOST}@{os.getpid()}@"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _remove_stale(base: Path) -> None:
    """Delete the staging folders in ``base`` left by dead processes of this host."""
    try:
        entries = list(base.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(_STAGING_PREFIX) or not entry.is_dir():
            continue
        parts = entry.name.rsplit("@", 3)
        if len(parts) != 4 or parts[1] != _HOST or not parts[2].isdigit():
            continue  # another host's, or not named by us: not ours to judge
        if int(parts[2]) != os.getpid() and not _process_alive(int(parts[2])):
            logger.info("removing %s, left by an interrupted export", entry)
            shutil.rmtree(entry, ignore_errors=True)


def population_name(brain_region: str | None) -> str:
    """``<brain_region>_neurons``, or ``default_neurons`` without a region.

    (The reference writes ``None_neurons`` then.) Characters that would split the name into
    HDF5 groups or trouble a circuit config (``/``, spaces) become ``_``.
    """
    region = re.sub(r"[/\s]+", "_", brain_region) if brain_region else "default"
    return f"{region}_neurons"


# -- selection -----------------------------------------------------------------------------------


def _models(access_point: Any, seeds: Iterable[int] | None, only_validated: bool,
            only_best: bool) -> list[StoredModel]:
    wanted = None if seeds is None else sorted({int(s) for s in seeds})
    stored = access_point.select_models(only_validated=False, only_best=False, seeds=wanted)
    if wanted is not None:
        missing = sorted(set(wanted) - {m.seed for m in stored})
        if missing:
            keys = [access_point.get_model_name_for_final(s) for s in missing]
            raise StorageError(
                f"{access_point.final_store.name}: no stored model for seed(s) {missing} "
                f"(keys {keys}; stored seeds: "
                f"{sorted(m.seed for m in access_point.select_models(only_best=False))}): "
                f"optimise and store the model before exporting it"
            )
    if only_validated:
        skipped = [m.key for m in stored if not m.validated]
        if skipped:
            logger.info("export: skipping models that did not pass validation: %s", skipped)
        stored = [m for m in stored if m.validated]
    if only_best and stored:
        stored = [min(stored, key=lambda m: m.score if m.score is not None else float("inf"))]
    if not stored:
        logger.warning("export of %s: no model to export", access_point.emodel_metadata.emodel)
    return stored


def _cell_model(access_point: Any) -> Any:
    from luigi_emodel.science.cell_model import build_cell_model

    return build_cell_model(
        access_point.get_model_configuration(),
        access_point.emodel_metadata.emodel,
        str(access_point.morph_path),
        morph_modifiers=access_point.pipeline_settings.morph_modifiers,
        multiloc_map=access_point.get_recipes().get("multiloc_map"),
    )


def _free_values(access_point: Any, cell_model: Any, model: StoredModel) -> dict[str, float]:
    free = [p.name for p in cell_model.params.values() if not p.frozen]
    check_stored_parameters(access_point, model, free)
    return {name: float(model.parameters[name]) for name in free}


# -- files ---------------------------------------------------------------------------------------


def write_hoc(cell_model: Any, free_values: dict[str, float], path: Path) -> None:
    """Write BluePyOpt's hoc template of ``cell_model`` with these free values to ``path``."""
    try:
        text = cell_model.create_hoc(free_values)
    except Exception as error:  # jinja or BluePyOpt refusing a parameter/mechanism
        raise ConfigurationError(
            f"{cell_model.name}: the model cannot be written as hoc: "
            f"{type(error).__name__}: {error}"
        ) from None
    _write_synced(path, text.encode())


def write_nodes_file(path: Path, model: StoredModel, morphology: str) -> None:
    """Write the one-node SONATA file of ``model``.

    Args:
        path: the nodes.h5 file to create.
        model: the stored model (metadata and ``threshold_data``).
        morphology: the morphology's name without extension (the copied file's stem).
    """
    import h5py
    import numpy as np

    text = h5py.string_dtype()
    threshold = model.threshold_data or {}

    def current(key: str) -> float:
        value = threshold.get(key)
        # NaN says "unknown": the export never simulates to find a missing value.
        return float("nan") if value is None else float(value)

    with h5py.File(path, "w") as handle:
        population = handle.create_group(f"nodes/{population_name(model.brain_region)}")
        # One node type, one group: node 0 is row 0 of group "0".
        population.create_dataset("node_type_id", data=np.zeros(1, dtype=np.int64))
        population.create_dataset("node_group_id", data=np.zeros(1, dtype=np.int64))
        population.create_dataset("node_group_index", data=np.zeros(1, dtype=np.int64))
        group = population.create_group("0")
        for name in ("x", "y", "z"):
            group.create_dataset(name, data=np.zeros(1, dtype=np.float32))
        # The identity rotation (the reference writes an all-zero quaternion, which is not a
        # rotation).
        for name, value in (("orientation_w", 1.0), ("orientation_x", 0.0),
                            ("orientation_y", 0.0), ("orientation_z", 0.0)):
            group.create_dataset(name, data=np.full(1, value, dtype=np.float32))
        # The SONATA specification's form "hoc:<template name>"; the reference writes the
        # path of the hoc file instead.
        strings = {
            "model_template": f"hoc:{model.emodel}",
            "model_type": "biophysical",
            "morphology": morphology,
            # Metadata left unset is omitted (as the reference does) rather than written as
            # a made-up value.
            "etype": model.etype,
            "mtype": model.mtype,
            "synapse_class": model.synapse_class,
            "region": model.brain_region,
        }
        for name, value in strings.items():
            if value is not None:
                group.create_dataset(name, data=np.array([value], dtype=object), dtype=text)
        dynamics = group.create_group("dynamics_params")
        dynamics.create_dataset("holding_current",
                                data=np.array([current("bpo_holding_current")]))
        dynamics.create_dataset("threshold_current",
                                data=np.array([current("bpo_threshold_current")]))
        handle.flush()
    fsync_file(path)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _publish(staging: Path, target: Path) -> None:
    """Put the complete ``staging`` folder in the place of ``target`` (replacing it)."""
    fsync_folder(staging)
    aside = Path(tempfile.mkdtemp(prefix=_staging_prefix("old"), dir=target.parent))
    try:
        # A folder cannot be renamed over a non-empty one: move the old export aside first
        # (between the two renames the export is absent, never incomplete). Retried because
        # a concurrent export of the same model may publish in between.
        for attempt in range(5):
            if target.exists():
                os.replace(target, aside / f"{attempt}")
            try:
                os.replace(staging, target)
                break
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == 4:
                    raise
        fsync_folder(target.parent)
    except BaseException:
        # Put the previous export back rather than leave none.
        previous = sorted(aside.iterdir(), key=lambda p: int(p.name))
        if previous and not target.exists():
            os.replace(previous[-1], target)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _export_folder(access_point: Any, kind: str, model: StoredModel, cell_model: Any,
                   free_values: dict[str, float]) -> Path:
    target = access_point.export_dir(kind, model.seed)
    base = target.parent
    base.mkdir(parents=True, exist_ok=True)
    morphology = Path(access_point.morph_path)
    _remove_stale(base)
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(target.name[:100]), dir=base))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the export is for others to read
        write_hoc(cell_model, free_values, staging / HOC_FILE)
        shutil.copyfile(morphology, staging / morphology.name)
        fsync_file(staging / morphology.name)
        if kind == "sonata":
            write_nodes_file(staging / NODES_FILE, model, morphology.stem)
        _publish(staging, target)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise StorageError(f"{target}: export failed, nothing was changed: {error}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("exported %s to %s", model.key, target)
    return target


def _export(access_point: Any, kind: str, seeds: Iterable[int] | None, only_validated: bool,
            only_best: bool) -> list[Path]:
    models = _models(access_point, seeds, only_validated, only_best)
    if not models:
        return []
    cell_model = _cell_model(access_point)
    # Check every model before writing any: a bad entry must not leave a partial batch.
    values = [_free_values(access_point, cell_model, m) for m in models]
    return [_export_folder(access_point, kind, model, cell_model, free)
            for model, free in zip(models, values)]


def export_hoc(access_point: Any, seeds: Iterable[int] | None = None,
               only_validated: bool = False, only_best: bool = False) -> list[Path]:
    """Write ``export_emodels_hoc/<as_string(seed)>/`` (model.hoc + morphology) per model.

    Args:
        access_point: the e-model's access point.
        seeds: export these seeds' models (default: every stored model of the e-model).
        only_validated: skip models that did not pass validation.
        only_best: export only the best-scoring of the selected models.

    Returns:
        The written folders.

    Raises:
        StorageError: a requested seed has no stored model, or a stored model lacks a free
            parameter of the configuration.
    """
    return _export(access_point, "hoc", seeds, only_validated, only_best)


def export_sonata(access_point: Any, seeds: Iterable[int] | None = None,
                  only_validated: bool = False, only_best: bool = False) -> list[Path]:
    """Write ``export_emodels_sonata/<as_string(seed)>/`` (model.hoc, morphology, nodes.h5)
    per model; holding and threshold currents come from the stored ``threshold_data`` (NaN
    when the model has none: run validation first to have them).

    Args and errors as :func:`export_hoc`.
    """
    return _export(access_point, "sonata", seeds, only_validated, only_best)
