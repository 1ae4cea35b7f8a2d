"""File primitives of the access point: JSON reads with clear errors, atomic writes, safe names."""

from __future__ import annotations

import errno
import json
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from luigi_emodel.exceptions import ConfigurationError, MissingFileError, StorageError

__all__ = [
    "MAX_COMPONENT_BYTES",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_component",
    "describe",
    "dumps_json",
    "fsync_file",
    "fsync_folder",
    "read_json",
]

#: Most buffers one writev call takes.
_IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024) if hasattr(os, "sysconf") else 16

#: Longest file or folder name most file systems accept.
MAX_COMPONENT_BYTES = 255


def describe(path: Path, root: Path | None) -> str:
    """``path`` as the user knows it: relative to the run root when inside it."""
    if root is not None:
        try:
            return str(path.relative_to(root))
        except ValueError:
            pass
    return str(path)


def check_component(name: str, what: str) -> str:
    """Refuse a name that would not stay one path component inside its folder.

    Args:
        name: the name to use as a file or folder name (e.g. ``as_string(seed)``).
        what: what the name is, for the error message.
    """
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or len(name.encode()) > MAX_COMPONENT_BYTES
    ):
        raise ConfigurationError(
            f"{what} {name[:80]!r} cannot be used as a file name: expected a non-empty name "
            f"without '/', NUL or '..', at most {MAX_COMPONENT_BYTES} bytes"
        )
    return name


def read_json(path: Path, source: str, named_by: str | None = None) -> Any:
    """Load a JSON file; a missing file or bad JSON raises a ConfigurationError naming it.

    Args:
        path: the file.
        source: how the user knows the file (relative to the run root when inside it).
        named_by: the file and field that gave this path (e.g. ``recipes.json: L5PC.params``),
            added to the message of a missing file so the user knows what to correct.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        named = f", named by {named_by}" if named_by else ""
        raise MissingFileError(f"{source}: file not found ({path}){named}") from None
    except IsADirectoryError:
        raise ConfigurationError(f"{source}: expected a JSON file, found a folder") from None
    except UnicodeDecodeError as error:
        raise ConfigurationError(f"{source}: not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise StorageError(f"{source}: cannot read: {error.strerror or error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(
            f"{source}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None


def dumps_json(data: Any) -> bytes:
    """JSON as the reference writes it (indent 2; NaN allowed, as Python's json reads it)."""
    return (json.dumps(data, indent=2, default=_json_default) + "\n").encode()


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays come out of eFEL and BluePyOpt.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def atomic_write_bytes(path: Path, data: bytes | Sequence[bytes], *,
                       min_mtime_ns: int | None = None) -> os.stat_result:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a mix.

    The data goes to a new temporary file in the same folder (created with ``O_EXCL`` and
    ``O_NOFOLLOW``, so a planted symlink is never followed), is flushed and fsynced, then
    ``os.replace``-d over ``path`` (which replaces a symlink at ``path`` rather than writing
    through it); the folder is fsynced so the rename survives a power cut.

    Args:
        path: destination.
        data: the whole new content, or its pieces in order (written with ``writev``, so
            that a large file made of many pieces is never joined in memory).
        min_mtime_ns: if given, the new file's mtime is set to at least this value. The final
            store passes ``old mtime + 1`` so that every version has a distinct mtime even when
            two writes fall in one tick of the file system's clock (its stat cache relies on it).

    Returns:
        The stat of the new file.
    """
    folder = path.parent
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:
        raise StorageError(f"{path}: folder {folder} does not exist") from None
    except OSError as error:
        raise StorageError(f"{path}: cannot write: {error.strerror or error}") from None
    try:
        try:
            _write_all(fd, [data] if isinstance(data, (bytes, bytearray, memoryview)) else data)
            os.fsync(fd)
            if min_mtime_ns is not None:
                now = max(time.time_ns(), min_mtime_ns)
                os.utime(fd, ns=(now, now))
            stat = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as error:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise StorageError(
                f"{path}: write failed, the file is unchanged: {error.strerror or error}"
            ) from None
        raise
    fsync_folder(folder)
    return stat


def _write_all(fd: int, chunks: Sequence[bytes]) -> None:
    """Write every chunk, in order; a short write (e.g. a file size limit) is resumed, so its
    cause surfaces as the OSError of the next call."""
    pending = list(chunks)
    start = 0
    while start < len(pending):
        batch = pending[start:start + _IOV_MAX]
        written = os.writev(fd, batch)
        if written == sum(map(len, batch)):
            start += len(batch)
            continue
        if written == 0:  # a regular file never does this; do not loop forever if one does
            raise OSError(errno.EIO, "write made no progress")
        while written:
            size = len(pending[start])
            if written < size:
                pending[start] = memoryview(pending[start])[written:]
                break
            written -= size
            start += 1


def atomic_write_json(path: Path, data: Any) -> None:
    """:func:`atomic_write_bytes` of ``data`` as JSON."""
    atomic_write_bytes(path, dumps_json(data))


def fsync_file(path: Path) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk, where the file system allows."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)
