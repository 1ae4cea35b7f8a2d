"""final.json: the store of optimised models, safe under many concurrent writers.

* **Writes** happen under a ``filelock`` lock file beside final.json (``final.json.lock``),
  as read-modify-write, and replace the file atomically (temporary file, fsync,
  ``os.replace``): a reader never sees a torn file and a SIGKILL at any instant leaves the
  old or the new content.
* **Reads** are cached on the file's ``(st_mtime_ns, st_size, st_ino)``: thousands of
  ``has_best_model`` calls cost one ``stat`` each and one parse per version of the file.
  Writers give every version a strictly larger mtime than the previous one, so two versions
  never share a cache key even within one tick of the file system's clock.
* **Layout**: one entry per line (``  "key": {...},``). It is plain JSON that any reader,
  the reference included, loads; it lets a store re-encode only the entry that changed
  instead of the whole file (the reference rewrites every entry, twice, on every store).
* **Recovery**: a final.json that does not parse is never overwritten silently. Reads fall
  back to ``final_tmp.json`` (the reference's recovery copy) when it parses; otherwise a
  :class:`StorageError` names the file, line and column. A store over a corrupt file with a
  good recovery copy first keeps the corrupt file as ``final.corrupt-<time>.json``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock

from luigi_emodel.access_point._files import atomic_write_bytes, describe
from luigi_emodel.exceptions import StorageError

__all__ = ["FinalStore"]

logger = logging.getLogger(__name__)

_StatKey = tuple[int, int, int]


#: Between two entries' lines; never inside one (JSON text escapes its newlines).
_SEPARATOR = b",\n"
_DECODER = json.JSONDecoder()


def _encode_entry(key: str, entry: Any) -> bytes:
    return f"  {json.dumps(key)}: {json.dumps(entry)}".encode()


def _parse_lines(raw: bytes) -> tuple[dict[str, Any], dict[str, bytes]] | None:
    """Parse a final.json in the one-entry-per-line layout, keeping each entry's line.

    Every line is parsed on its own and must be exactly one ``"key": value`` pair; then the
    file is provably those pairs, and a store may later reuse any line verbatim. A file that
    only looks like the layout (a pair broken over lines that start like entries) fails the
    check, and None sends it through the whole-file parse. Costs about 1.3 ``json.loads``
    of the file (keys repeated across entries are no longer shared, and the lines are kept),
    which a later store of this version then saves: it writes the kept lines as they are.
    """
    if raw[:2] != b"{\n" or raw[-3:] != b"\n}\n":
        return None
    body = raw[2:-3]
    data: dict[str, Any] = {}
    lines: dict[str, bytes] = {}
    decode = _DECODER.raw_decode
    for line in body.split(_SEPARATOR) if body else ():
        if line[:3] != b'  "' or b"\n" in line:
            return None
        try:
            text = line.decode()
            key, end = decode(text, 2)
            if text[end:end + 2] != ": ":
                return None
            value, stop = decode(text, end + 2)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        if stop != len(text) or key in data:
            return None
        data[key] = value
        lines[key] = line
    return data, lines


class _Snapshot:
    """One parsed version of final.json."""

    __slots__ = ("data", "key", "lines", "memo", "raw", "source")

    def __init__(self, key: _StatKey | None, data: dict[str, Any], raw: bytes | None,
                 source: Path | None, lines: dict[str, bytes] | None = None) -> None:
        self.key = key
        self.data = data
        # Objects derived from entries by readers (e.g. validated models), keyed like data:
        # (raw entry, derived object). Valid while the raw entry is the same object.
        self.memo: dict[str, tuple[Any, Any]] = {}
        # Kept only for a corrupt file (with source None): marks the snapshot as recovered.
        self.raw = raw
        self.source = source
        self.lines = lines

    def encoded_lines(self) -> dict[str, bytes]:
        """Each entry's line: the file's own when it had the layout, else re-encoded."""
        if self.lines is None:
            self.lines = {k: _encode_entry(k, v) for k, v in self.data.items()}
        return self.lines


_EMPTY = _Snapshot(None, {}, None, None)


class FinalStore:
    """The models stored in one final.json.

    Use :meth:`for_path` to share one store (and its cache) per file in a process.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> store = FinalStore(root / "final.json")
        >>> store.put("cell__1", {"emodel": "cell", "seed": 1})
        False
        >>> "cell__1" in store.entries()
        True
    """

    _shared: dict[tuple[Path, bool], FinalStore] = {}
    _shared_lock = threading.Lock()

    def __init__(self, path: Path, *, root: Path | None = None, use_cache: bool = True,
                 lock_timeout: float = 600.0) -> None:
        self.path = Path(path)
        self.root = root
        self.use_cache = use_cache
        self.lock_timeout = lock_timeout
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.recovery_path = self.path.with_name(f"{self.path.stem}_tmp{self.path.suffix}")
        self._snapshot = _EMPTY
        self._cache_lock = threading.Lock()
        self._file_lock: filelock.BaseFileLock | None = None
        # fcntl locks belong to the process: threads of one process also need this lock.
        self._thread_lock = threading.RLock()

    @classmethod
    def for_path(cls, path: Path, *, root: Path | None = None, use_cache: bool = True) -> FinalStore:
        """The process-wide store of ``path`` (one cache for all access points using it)."""
        key = (Path(path), use_cache)
        with cls._shared_lock:
            store = cls._shared.get(key)
            if store is None:
                store = cls(path, root=root, use_cache=use_cache)
                cls._shared[key] = store
            return store

    # -- reading -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The file as the user knows it (relative to the run root when inside it)."""
        return describe(self.path, self.root)

    def entries(self) -> Mapping[str, Any]:
        """All entries, keyed by model name. Read-only: do not mutate what is returned."""
        return self._current().data

    def entries_and_memo(self) -> tuple[Mapping[str, Any], dict[str, tuple[Any, Any]]]:
        """The entries and this version's memo of objects derived from them.

        A reader that turns entries into objects (pydantic models, say) keeps them in the memo
        as ``memo[key] = (entry, derived)`` and reuses them while ``memo[key][0] is entry``:
        each version of the file is then converted once, and a store carries the derived
        objects of the entries it did not change over to the new version.
        """
        snapshot = self._current()
        return snapshot.data, snapshot.memo

    def get(self, key: str) -> Any:
        """The raw entry stored under ``key``, or None."""
        return self._current().data.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._current().data

    def copy(self) -> dict[str, Any]:
        """A deep copy of the whole content, safe to modify."""
        return copy.deepcopy(dict(self._current().data))

    def _current(self) -> _Snapshot:
        if self.use_cache:
            # The common case, a version already parsed, costs one stat (not open/fstat/close).
            try:
                stat = os.stat(self.path)
            except FileNotFoundError:
                return _EMPTY
            except OSError:
                pass  # reported by the open below
            else:
                snapshot = self._snapshot
                if snapshot.key == (stat.st_mtime_ns, stat.st_size, stat.st_ino):
                    return snapshot
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return _EMPTY
        except OSError as error:
            raise StorageError(f"{self.name}: cannot read: {error.strerror or error}") from None
        try:
            stat = os.fstat(fd)
            key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            snapshot = self._snapshot
            if self.use_cache and snapshot.key == key:
                return snapshot
            chunks = []
            while True:
                chunk = os.read(fd, max(stat.st_size, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
            raw = b"".join(chunks)
        finally:
            os.close(fd)
        snapshot = self._parse(raw, key)
        with self._cache_lock:
            self._snapshot = snapshot
        return snapshot

    def _parse(self, raw: bytes, key: _StatKey) -> _Snapshot:
        parsed = _parse_lines(raw)
        if parsed is not None:
            return _Snapshot(key, parsed[0], None, self.path, parsed[1])
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            recovered = self._recovery()
            where = (
                f"line {error.lineno}, column {error.colno}"
                if isinstance(error, json.JSONDecodeError) else "bytes are not UTF-8"
            )
            if recovered is None:
                raise StorageError(
                    f"{self.name}: corrupt ({where}) and no readable "
                    f"{self.recovery_path.name} to recover from; the file is left as it is "
                    f"for you to repair"
                ) from None
            logger.warning("%s is corrupt (%s); reading %s instead", self.name, where,
                           self.recovery_path.name)
            snapshot = _Snapshot(key, recovered, None, None)
            snapshot.raw = raw  # marks the snapshot as coming from a corrupt file
            snapshot.source = None
            return snapshot
        self._check_top_level(data, self.name)
        return _Snapshot(key, data, None, self.path)

    def _recovery(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.recovery_path.read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _check_top_level(data: Any, name: str) -> None:
        if not isinstance(data, dict):
            raise StorageError(
                f"{name}: expected a JSON object mapping model names to entries, found "
                f"{type(data).__name__}"
            )

    # -- writing -----------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the write lock of final.json (re-entrant within one store object)."""
        if self._file_lock is None:
            self._file_lock = filelock.FileLock(self.lock_path, timeout=self.lock_timeout)
        # Only taking the lock is translated here: an OSError of the caller's body is its own.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._thread_lock.acquire()
            try:
                self._file_lock.acquire()
            except BaseException:
                self._thread_lock.release()
                raise
        except filelock.Timeout:
            raise StorageError(
                f"{describe(self.lock_path, self.root)}: lock still held by another process "
                f"after {self.lock_timeout:.0f} s"
            ) from None
        except OSError as error:
            # PermissionError, but also ELOOP (a symlink planted at the lock file: filelock
            # opens it with O_NOFOLLOW) and EROFS.
            raise StorageError(
                f"{describe(self.lock_path, self.root)}: cannot take the lock: "
                f"{error.strerror or error}"
            ) from None
        try:
            yield
        finally:
            self._file_lock.release()
            self._thread_lock.release()

    def update(self, change: Callable[[dict[str, Any]], set[str]]) -> None:
        """Apply ``change`` to the content under the lock and write the result atomically.

        Args:
            change: receives a dict of all entries (a copy of the top level; entries are
                shared, so replace an entry rather than mutating it) and returns the set of
                keys it added, replaced or deleted.
        """
        with self.locked():
            # Bypass nothing: _current() re-reads unless the cached version is the file's.
            snapshot = self._current()
            if snapshot.source is None and snapshot.raw is not None:
                self._keep_corrupt_copy()
            data = dict(snapshot.data)
            lines = dict(snapshot.encoded_lines()) if snapshot.data else {}
            changed = change(data)
            for key in changed:
                if key in data:
                    lines[key] = _encode_entry(key, data[key])
                else:
                    lines.pop(key, None)
            # Keep the order of `data` (insertion order: old entries, then new ones). The
            # lines go to the file as they are (writev): no copy of the whole text is built.
            chunks = [b"{\n"]
            for key in data:
                chunks += (lines[key], _SEPARATOR)
            if data:
                chunks[-1] = b"\n}\n"
            else:
                chunks.append(b"}\n")
            old_mtime = snapshot.key[0] if snapshot.key else 0
            stat = atomic_write_bytes(self.path, chunks, min_mtime_ns=old_mtime + 1)
            new = _Snapshot((stat.st_mtime_ns, stat.st_size, stat.st_ino), data, None, self.path,
                            lines)
            new.memo = {k: v for k, v in snapshot.memo.items() if k not in changed}
            with self._cache_lock:
                self._snapshot = new

    def put(self, key: str, entry: dict[str, Any]) -> bool:
        """Store ``entry`` under ``key``; returns True if it replaced an existing entry."""
        replaced = False

        def change(data: dict[str, Any]) -> set[str]:
            nonlocal replaced
            replaced = key in data
            data[key] = entry
            return {key}

        self.update(change)
        return replaced

    def replace_all(self, content: dict[str, Any]) -> None:
        """Replace the whole content (``save_final``)."""
        self._check_top_level(content, self.name)

        def change(data: dict[str, Any]) -> set[str]:
            old = set(data)
            data.clear()
            data.update(content)
            return old | set(content)

        self.update(change)

    def _keep_corrupt_copy(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.stem}.corrupt-{stamp}{self.path.suffix}")
        try:
            os.link(self.path, target)
        except FileExistsError:
            pass
        except OSError as error:
            raise StorageError(
                f"{self.name}: corrupt, and a copy cannot be kept before recovering from "
                f"{self.recovery_path.name}: {error.strerror or error}"
            ) from None
        logger.warning("%s was corrupt: kept as %s; continuing from %s", self.name,
                       target.name, self.recovery_path.name)
