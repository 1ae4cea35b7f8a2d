"""Readers of recordings for the extraction, and the checks every recording goes through.

BluePyEfe reads a recording through a *reader*: a function that takes the metadata of one
file (``filepath``, units, ``ljp``, ``ton``/``toff``...) and returns a list of sweeps, each a
dict with ``voltage``, ``current`` and ``dt`` (plus, optionally, the units). This module
gives :class:`RecordingReader`, the one reader the extraction hands to BluePyEfe. It picks

- the user's own reader when ``pipeline_settings.extraction_reader`` is
  ``[path/to/file.py, function_name]``;
- otherwise a reader by file extension: BluePyEfe's readers for Igor (``.ibw``, ``.bwav``),
  Axon (``.abf``), NWB (``.nwb``) and text (``.txt``) files, and :func:`read_npz` for our
  own ``.npz`` format (below);

and checks what it returns, so that a bad file gives one error naming it instead of a
failure deep inside BluePyEfe or, worse, wrong e-features: the file must be readable, each
sweep must have finite voltage and current arrays of the same length and a positive time
step, and every unit must be one BluePyEfe knows.

The ``.npz`` format (one file per sweep, for data that comes from elsewhere)::

    voltage  1-D array, mV
    current  1-D array, nA, same length as voltage
    dt       scalar, ms (sampling interval)
    ton      scalar, ms, optional: start of the step
    toff     scalar, ms, optional: end of the step

Write one with :func:`write_npz`. Without ``ton``/``toff`` (here or in the file's metadata)
BluePyEfe detects the step in the current.

Readers run wherever the extraction's map function sends them (possibly other processes):
:class:`RecordingReader` is picklable and loads a user's reader again where it runs.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from luigi_emodel.exceptions import ConfigurationError, ExtractionError, MissingFileError

__all__ = [
    "NPZ_KEYS",
    "NPZ_OPTIONAL_KEYS",
    "RecordingReader",
    "check_unit",
    "load_user_reader",
    "read_npz",
    "reader_for_extension",
    "write_npz",
]

#: Arrays and scalars every .npz sweep holds, and the optional ones.
NPZ_KEYS = ("voltage", "current", "dt")
NPZ_OPTIONAL_KEYS = ("ton", "toff")
#: Units of the .npz format.
NPZ_UNITS = {"v_unit": "mV", "i_unit": "nA", "t_unit": "ms"}

#: Kind of quantity of each unit key, as BluePyEfe converts it.
UNIT_KINDS = {"v_unit": "voltage", "i_unit": "current", "t_unit": "time"}

# Readers loaded from users' files, per (path, function) and process: a reader is loaded
# once per process, not once per sweep.
_USER_READERS: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {}


def check_unit(key: str, unit: Any) -> str | None:
    """Why ``unit`` is not a unit BluePyEfe can convert for ``key`` (None if it is).

    BluePyEfe's own converters decide, so the accepted spellings are always the ones of the
    installed version.
    """
    from bluepyefe import tools

    convert = {"v_unit": tools.to_mV, "i_unit": tools.to_nA, "t_unit": tools.to_ms}[key]
    if not isinstance(unit, str):
        return f"expected a unit name (a string), got {unit!r}"
    try:
        convert(np.float64(1.0), unit)
    except Exception:  # BluePyEfe raises a bare Exception for unknown units
        return f"unknown {UNIT_KINDS[key]} unit {unit!r}"
    return None


def _to_ms(value: float, t_unit: str) -> float:
    from bluepyefe import tools

    return float(tools.to_ms(np.float64(value), t_unit))


def write_npz(path: str | os.PathLike[str], voltage: Any, current: Any, dt: float,
              ton: float | None = None, toff: float | None = None) -> Path:
    """Write one sweep in the ``.npz`` format (voltage mV, current nA, times ms)."""
    arrays: dict[str, Any] = {
        "voltage": np.asarray(voltage, dtype=float),
        "current": np.asarray(current, dtype=float),
        "dt": np.float64(dt),
    }
    if ton is not None:
        arrays["ton"] = np.float64(ton)
    if toff is not None:
        arrays["toff"] = np.float64(toff)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:  # an open file: numpy would otherwise append ".npz"
        np.savez(handle, **arrays)
    return path


def read_npz(in_data: dict[str, Any]) -> list[dict[str, Any]]:
    """BluePyEfe reader of one ``.npz`` sweep (see the module docstring for the format).

    ``ton``/``toff`` of the file are given to BluePyEfe as metadata in ms unless the file's
    metadata already sets them (the metadata win, as for every other key).

    Raises:
        ExtractionError: the file lacks a key, has an unknown key or a malformed value.
        ConfigurationError: the metadata give units other than the format's (mV, nA, ms).
    """
    path = Path(in_data["filepath"])
    for key, unit in NPZ_UNITS.items():
        given = in_data.get(key)
        if given is not None and given != unit:
            raise ConfigurationError(
                f"{path}: {key} is {given!r} in the file's metadata, but .npz recordings are "
                f"in {unit} (remove {key} from the metadata)"
            )
    with np.load(path, allow_pickle=False) as data:
        content = {key: data[key] for key in data.files}
    missing = [key for key in NPZ_KEYS if key not in content]
    if missing:
        raise ExtractionError(
            f"{path}: missing {', '.join(missing)} (a .npz recording holds voltage [mV], "
            f"current [nA], dt [ms], optionally ton and toff [ms])"
        )
    unknown = sorted(set(content) - set(NPZ_KEYS) - set(NPZ_OPTIONAL_KEYS))
    if unknown:
        raise ExtractionError(
            f"{path}: unknown key(s) {', '.join(unknown)} (expected voltage, current, dt, "
            f"ton, toff)"
        )
    scalars = {}
    for key in ("dt", *NPZ_OPTIONAL_KEYS):
        if key not in content:
            continue
        value = content[key]
        if value.shape not in ((), (1,)) or not np.issubdtype(value.dtype, np.number):
            raise ExtractionError(f"{path}: {key}: expected a number, got an array of shape "
                                  f"{value.shape}")
        scalars[key] = float(value.reshape(()))
    for key in ("ton", "toff"):
        if key in scalars:
            in_data.setdefault(key, scalars[key])
    return [{
        "voltage": content["voltage"],
        "current": content["current"],
        "dt": scalars["dt"],
        **NPZ_UNITS,
    }]


def reader_for_extension(path: str | os.PathLike[str]) -> Callable[[dict[str, Any]], Any]:
    """The reader of a file by its extension.

    Raises:
        ConfigurationError: an extension no reader handles.
    """
    from bluepyefe import reader as bpe

    suffix = Path(path).suffix.lower()
    readers: dict[str, Callable[[dict[str, Any]], Any]] = {
        ".npz": read_npz,
        ".ibw": bpe.igor_reader,
        ".bwav": bpe.igor_reader,
        ".abf": bpe.axon_reader,
        ".nwb": bpe.nwb_reader,
        ".txt": bpe.csv_lccr_reader,
    }
    if suffix not in readers:
        raise ConfigurationError(
            f"{path}: no reader for {suffix or 'files without extension'!s} (known: "
            f"{', '.join(sorted(readers))}); set pipeline_settings.extraction_reader to "
            f"[path/to/reader.py, function_name] to read other formats"
        )
    return readers[suffix]


def load_user_reader(path: str | os.PathLike[str], function: str,
                     setting: str = "pipeline_settings.extraction_reader"
                     ) -> Callable[[dict[str, Any]], Any]:
    """The function ``function`` of the Python file ``path`` (absolute), loaded once per process.

    Raises:
        MissingFileError: the file does not exist.
        ConfigurationError: the file cannot be imported or has no such function.
    """
    key = (str(path), function)
    if key in _USER_READERS:
        return _USER_READERS[key]
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{setting}[0]: reader file not found: {path}")
    name = f"_luigi_emodel_reader_{abs(hash(key))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"{setting}[0]: {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    # Registered so that functions of the module pickle by reference inside this process.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ConfigurationError(
            f"{setting}[0]: {path} cannot be imported: {type(error).__name__}: {error}"
        ) from error
    reader = getattr(module, function, None)
    if not callable(reader):
        raise ConfigurationError(f"{setting}[1]: {path} has no function {function!r}")
    _USER_READERS[key] = reader
    return reader


class RecordingReader:
    """The reader given to BluePyEfe: picks a reader, reads, and checks every sweep.

    Args:
        user_reader: ``(absolute path of a .py file, function name)`` of the user's reader, or
            None for the readers by extension.
        root: folder that file names in messages are shown relative to (the run root).
    """

    def __init__(self, user_reader: tuple[str, str] | None = None,
                 root: str | os.PathLike[str] | None = None) -> None:
        self.user_reader = user_reader
        self.root = None if root is None else str(root)

    def _name(self, path: Any) -> str:
        if self.root is not None:
            try:
                return str(Path(path).relative_to(self.root))
            except ValueError:
                pass
        return str(path)

    def reader(self, path: str) -> Callable[[dict[str, Any]], Any]:
        """The function that reads ``path``."""
        if self.user_reader is not None:
            return load_user_reader(*self.user_reader)
        return reader_for_extension(path)

    def __call__(self, config_data: dict[str, Any]) -> list[dict[str, Any]]:
        path = config_data.get("filepath") or config_data.get("v_file")
        name = self._name(path)
        for key in ("v_file", "i_file"):  # Igor: voltage and current in two files
            other = config_data.get(key)
            if other is not None and other != path:
                name += f" ({key} {self._name(other)})"
        read = self.reader(str(path))
        try:
            traces = read(config_data)
        except (ConfigurationError, ExtractionError):
            raise
        except Exception as error:
            raise ExtractionError(
                f"{name}: cannot be read: {type(error).__name__}: {error}"
            ) from error
        if isinstance(traces, Mapping):
            traces = [traces]
        try:
            traces = list(traces)
        except TypeError:
            raise ExtractionError(
                f"{name}: the reader returned {type(traces).__name__}, expected a list of "
                f"sweeps (dicts with voltage, current and dt)"
            ) from None
        if not traces:
            raise ExtractionError(f"{name}: no sweep found in the file"
                                  + _protocol_hint(config_data))
        for index, trace in enumerate(traces):
            self._check_trace(config_data, trace, f"{name}: sweep {index}")
        return traces

    def _check_trace(self, config_data: dict[str, Any], trace: Any, where: str) -> None:
        if not isinstance(trace, Mapping):
            raise ExtractionError(f"{where}: expected a dict with voltage, current and dt, "
                                  f"got {type(trace).__name__}")
        arrays = {}
        for key in ("voltage", "current"):
            if trace.get(key) is None:
                raise ExtractionError(f"{where}: no {key} trace")
            try:
                arrays[key] = np.asarray(trace[key], dtype=float)
            except (TypeError, ValueError):
                raise ExtractionError(f"{where}: {key} is not an array of numbers") from None
            if arrays[key].ndim != 1 or arrays[key].size < 2:
                raise ExtractionError(f"{where}: {key}: expected a 1-D array of at least 2 "
                                      f"samples, got shape {arrays[key].shape}")
            bad = np.flatnonzero(~np.isfinite(arrays[key]))
            if bad.size:
                raise ExtractionError(
                    f"{where}: {key} has {bad.size} NaN or infinite sample(s) (first at index "
                    f"{bad[0]} of {arrays[key].size})"
                )
        if arrays["voltage"].size != arrays["current"].size:
            raise ExtractionError(
                f"{where}: voltage and current have different lengths "
                f"({arrays['voltage'].size} and {arrays['current'].size} samples)"
            )
        units = {}
        for key in UNIT_KINDS:
            # As BluePyEfe: the file's metadata win over what the reader found in the file.
            from_config = config_data.get(key) is not None
            unit = config_data[key] if from_config else trace.get(key)
            if unit is None:
                raise ConfigurationError(
                    f"{where}: no {UNIT_KINDS[key]} unit: set {key} in the file's "
                    f"other_metadata (or ecodes)"
                )
            problem = check_unit(key, unit)
            if problem:
                origin = "in the file's metadata" if from_config else "read from the file"
                raise ConfigurationError(f"{where}: {key}: {problem} ({origin})")
            units[key] = unit
        given = config_data.get("dt") if config_data.get("dt") is not None else trace.get("dt")
        try:
            dt = float(given)  # type: ignore[arg-type]  # None and junk handled below
        except (TypeError, ValueError):
            raise ExtractionError(f"{where}: no valid time step dt (got {given!r})") from None
        if not np.isfinite(dt) or dt <= 0:
            raise ExtractionError(f"{where}: time step dt must be positive, got {dt}")
        duration = _to_ms(dt, units["t_unit"]) * arrays["voltage"].size
        ton, toff = config_data.get("ton"), config_data.get("toff")
        for key, value in (("ton", ton), ("toff", toff)):
            if value is not None and not 0 <= float(value) <= duration:
                raise ConfigurationError(
                    f"{where}: {key} = {value} ms is outside the sweep (0 to {duration:g} ms)"
                )
        if ton is not None and toff is not None and float(ton) >= float(toff):
            raise ConfigurationError(f"{where}: ton ({ton} ms) must be before toff ({toff} ms)")


def _protocol_hint(config_data: dict[str, Any]) -> str:
    if str(config_data.get("filepath", "")).lower().endswith(".nwb"):
        return f" for protocol {config_data.get('protocol_name')!r}"
    return ""
