"""FinalStore on its own: content, layout, stat cache, recovery, hostile files and failed writes.

Another ``FinalStore`` object on the same path stands for another process where only the
cache matters; real child processes (``tests/_writer.py``) are used where the operating
system's view of the process matters (resource limits, signals, privileges).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from luigi_emodel import StorageError
from luigi_emodel.access_point import _files
from luigi_emodel.access_point.final_store import FinalStore

WRITER = Path(__file__).with_name("_writer.py")


def entry(seed: int, **extra: Any) -> dict[str, Any]:
    """A small final.json entry with nested values of every JSON type."""
    return {"emodel": "cell", "seed": seed, "score": seed / 3,
            "parameters": {"g_pas.all": 1e-5 * (seed + 1)},
            "fitness": {"Step.soma.v.Spikecount": float(seed)},
            "validated": None, "tags": ["a", "é"], **extra}


def body_lines(path: Path) -> list[str]:
    """The lines between the braces of final.json."""
    lines = path.read_text().splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    return lines[1:-1]


def tmp_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".tmp"))


class CountingStore(FinalStore):
    """A store that counts how many times it parses final.json."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parses = 0

    def _parse(self, raw: bytes, key: Any) -> Any:
        self.parses += 1
        return super()._parse(raw, key)


def run_writer(*args: str, timeout: float = 60) -> str:
    """Run ``tests/_writer.py`` to completion; returns its stdout."""
    done = subprocess.run([sys.executable, str(WRITER), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The next line the child prints, waiting at most ``timeout`` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output from the child within {timeout} s")
    return proc.stdout.readline()


# -- content -----------------------------------------------------------------------------------


def test_put_replace_get(tmp_path: Path) -> None:
    store = FinalStore(tmp_path / "final.json")
    assert store.get("m1") is None and "m1" not in store and dict(store.entries()) == {}
    assert not store.path.exists()  # reading creates nothing
    assert store.put("m1", entry(1)) is False
    assert store.put("m2", entry(2)) is False
    assert store.put("m1", entry(1, validated=True)) is True
    assert store.get("m1") == entry(1, validated=True)
    assert "m2" in store and list(store.entries()) == ["m1", "m2"]
    assert json.loads(store.path.read_text()) == {"m1": entry(1, validated=True), "m2": entry(2)}
    copy = store.copy()
    copy["m2"]["seed"] = 99
    assert store.get("m2")["seed"] == 2  # the copy is deep


def test_replace_all(tmp_path: Path) -> None:
    store = FinalStore(tmp_path / "final.json")
    for seed in range(3):
        store.put(f"m{seed}", entry(seed))
    content = {"z": entry(7), "m1": entry(8)}
    store.replace_all(content)
    assert json.loads(store.path.read_text()) == content
    assert list(FinalStore(store.path).entries()) == ["z", "m1"]  # in the given order
    before = store.path.read_bytes()
    with pytest.raises(StorageError, match=r"final\.json: expected a JSON object.*found list"):
        store.replace_all([entry(1)])  # type: ignore[arg-type]
    assert store.path.read_bytes() == before
    store.replace_all({})
    assert json.loads(store.path.read_text()) == {} and dict(store.entries()) == {}
    store.put("again", entry(1))
    assert json.loads(store.path.read_text()) == {"again": entry(1)}


def test_one_entry_per_line_and_a_put_rewrites_only_its_line(tmp_path: Path) -> None:
    store = FinalStore(tmp_path / "final.json")
    for seed in range(4):
        store.put(f"m{seed}", entry(seed))
    lines = body_lines(store.path)
    assert len(lines) == 4
    for seed, line in enumerate(lines):
        assert json.loads("{" + line.rstrip(",") + "}") == {f"m{seed}": entry(seed)}

    # Another store (another process) reads the file and reuses every other line as it is.
    FinalStore(store.path).put("m2", entry(2, validated=False))
    after = body_lines(store.path)
    changed = [i for i, (old, new) in enumerate(zip(lines, after)) if old != new]
    assert changed == [2]

    store.put("m4", entry(4))  # a new entry goes last; only the old last line gains a comma
    grown = body_lines(store.path)
    assert grown[:3] == after[:3] and grown[3] == after[3] + ","
    assert json.loads("{" + grown[4] + "}") == {"m4": entry(4)}


def test_thousands_of_entries_round_trip(tmp_path: Path) -> None:
    # More lines than one writev call takes: the file is written in several batches.
    path = tmp_path / "final.json"
    content = {f"m{seed}": entry(seed) for seed in range(1500)}
    FinalStore(path).replace_all(content)
    FinalStore(path).put("m700", entry(700, validated=True))
    assert json.loads(path.read_text()) == {**content, "m700": entry(700, validated=True)}
    assert len(body_lines(path)) == 1500


def test_a_put_keeps_other_lines_byte_for_byte(tmp_path: Path) -> None:
    # Lines in the layout but spelled differently from what the store writes (no spaces,
    # unescaped non-ASCII, NaN): a put of another entry must not re-encode them.
    path = tmp_path / "final.json"
    kept = ['  "m0": {"seed":0,"tags":["é"]}', '  "m1": {"seed":1,"score":NaN}']
    path.write_text("{\n" + ",\n".join(kept) + "\n}\n", encoding="utf-8")
    store = FinalStore(path)
    assert store.get("m0") == {"seed": 0, "tags": ["é"]}
    store.put("m2", entry(2))
    assert body_lines(path)[:2] == [line + "," for line in kept]
    store.put("m0", entry(0))
    assert body_lines(path)[1] == kept[1] + ","


# -- the stat cache -----------------------------------------------------------------------------


def test_reads_parse_once_per_version(tmp_path: Path) -> None:
    path = tmp_path / "final.json"
    writer = FinalStore(path)
    writer.put("m1", entry(1))
    reader = CountingStore(path)
    first = reader.entries()
    for _ in range(100):
        assert reader.entries() is first and reader.get("m1") == entry(1) and "m1" in reader
    assert reader.parses == 1

    writer.put("m2", entry(2))
    assert "m2" in reader and reader.entries() is not first
    for _ in range(100):
        reader.get("m2")
    assert reader.parses == 2

    reader.put("m3", entry(3))  # a store knows what it wrote: no parse of its own file
    assert reader.get("m3") == entry(3) and reader.parses == 2

    uncached = CountingStore(path, use_cache=False)
    assert uncached.entries() is not uncached.entries()
    assert uncached.parses == 2


def test_other_writer_seen_even_with_same_size_in_one_tick(tmp_path: Path) -> None:
    path = tmp_path / "final.json"
    reader, writer = FinalStore(path), FinalStore(path)
    writer.put("m1", entry(1))
    versions = []
    for value in range(300):
        writer.put("m1", {"v": value % 10})  # every version has the same size
        stat = os.stat(path)
        versions.append((stat.st_mtime_ns, stat.st_size))
        assert reader.get("m1") == {"v": value % 10}
    assert len({size for _, size in versions}) == 1
    mtimes = [mtime for mtime, _ in versions]
    assert all(a < b for a, b in zip(mtimes, mtimes[1:]))  # what keeps cache keys distinct


def test_a_new_version_never_reuses_the_mtime_of_the_previous_one(tmp_path: Path) -> None:
    # The previous version's mtime is ahead of the clock (another host's clock, a coarse
    # tick): the next version must still get a larger one, or its cache key could repeat.
    path = tmp_path / "final.json"
    reader, writer = FinalStore(path), FinalStore(path)
    writer.put("m1", {"v": 1})
    ahead = os.stat(path).st_mtime_ns + 3600 * 10**9
    os.utime(path, ns=(ahead, ahead))
    assert reader.get("m1") == {"v": 1}
    writer.put("m1", {"v": 2})
    assert os.stat(path).st_mtime_ns > ahead
    assert reader.get("m1") == {"v": 2}


def test_same_size_and_mtime_but_a_new_file_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "final.json"
    store = FinalStore(path)
    store.put("m1", {"v": 1})
    assert store.get("m1") == {"v": 1}
    old = os.stat(path)
    replacement = tmp_path / "replacement.json"
    replacement.write_text(path.read_text().replace('"v": 1', '"v": 2'))
    os.utime(replacement, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(replacement, path)
    new = os.stat(path)
    assert (new.st_size, new.st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    assert store.get("m1") == {"v": 2}  # told apart by the inode alone


def test_plain_writer_replacing_the_file_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "final.json"
    store = FinalStore(path)
    store.put("m1", entry(1))
    assert "m1" in store
    for seed in range(20):
        with open(path, "w") as handle:  # in place, as the reference writes it
            json.dump({f"ref{seed}": entry(seed)}, handle, indent=2)
        assert list(store.entries()) == [f"ref{seed}"]


# -- other layouts and bad files ------------------------------------------------------------------


def test_reference_layout_is_read_and_kept_by_a_put(tmp_path: Path) -> None:
    path = tmp_path / "final.json"
    content = {f"cell__it1__{seed}": entry(seed) for seed in range(3)}
    content["cell"] = {"emodel": "cell", "seed": "5", "params": {"a": 1}, "nan": float("nan")}
    with open(path, "w") as handle:
        json.dump(content, handle, indent=2)
    store = FinalStore(path)
    assert list(store.entries()) == list(content)
    store.put("cell__it1__9", entry(9))
    stored = json.loads(path.read_text())
    assert list(stored) == [*content, "cell__it1__9"]
    for key, value in content.items():
        assert json.dumps(stored[key]) == json.dumps(value)  # NaN compares via its text
    assert len(body_lines(path)) == 5  # now one entry per line


def test_hand_formatted_file_is_not_corrupted_by_a_put(tmp_path: Path) -> None:
    # Valid JSON whose lines look like one entry each but are not.
    path = tmp_path / "final.json"
    path.write_text('{\n  "a": {"x": 0,\n  "b": 1}, "b": 2\n}\n')
    store = FinalStore(path)
    assert dict(store.entries()) == {"a": {"x": 0, "b": 1}, "b": 2}
    store.put("b", entry(3))
    assert json.loads(path.read_text()) == {"a": {"x": 0, "b": 1}, "b": entry(3)}


def test_top_level_list_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "final.json"
    path.write_text(json.dumps([entry(1)]))
    store = FinalStore(path, root=tmp_path)
    with pytest.raises(StorageError, match=r"^final\.json: expected a JSON object .*found list"):
        store.entries()
    with pytest.raises(StorageError, match=r"^final\.json: expected a JSON object"):
        store.put("m1", entry(1))
    assert json.loads(path.read_text()) == [entry(1)]


def test_corrupt_file_is_reported_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "final.json"
    store = FinalStore(path, root=tmp_path)
    store.put("m1", entry(1))
    store.put("m2", entry(2))
    torn = path.read_bytes()[:-40]
    path.write_bytes(torn)
    before = os.stat(path)
    with pytest.raises(StorageError,
                       match=r"^final\.json: corrupt \(line 3, column \d+\) and no readable "
                             r"final_tmp\.json"):
        store.get("m1")
    with pytest.raises(StorageError, match=r"final\.json: corrupt"):
        store.put("m3", entry(3))
    after = os.stat(path)
    assert path.read_bytes() == torn
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.json", "final.json.lock"]

    path.write_bytes(b'{"m1": 1}\xff\n')  # not UTF-8
    with pytest.raises(StorageError, match="bytes are not UTF-8"):
        store.get("m1")


def test_final_tmp_json_is_the_fallback(tmp_path: Path) -> None:
    path = tmp_path / "final.json"
    recovery = {"m1": entry(1), "m2": entry(2)}
    (tmp_path / "final_tmp.json").write_text(json.dumps(recovery, indent=2))
    path.write_text('{"m1": {"seed": 1}, "m2": ')  # torn by a crash of the reference
    store = FinalStore(path)
    assert dict(store.entries()) == recovery
    store.put("m3", entry(3))
    assert json.loads(path.read_text()) == {**recovery, "m3": entry(3)}
    kept = list(tmp_path.glob("final.corrupt-*.json"))
    assert len(kept) == 1 and kept[0].read_text() == '{"m1": {"seed": 1}, "m2": '
    # A recovery copy that is no object is not used.
    (tmp_path / "final_tmp.json").write_text("[1, 2]")
    path.write_text("{")
    with pytest.raises(StorageError, match="no readable final_tmp.json"):
        FinalStore(path).entries()


# -- hostile file system -----------------------------------------------------------------------


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the run root that no store may write to."""
    path = tmp_path / "elsewhere" / "victim.json"
    path.parent.mkdir()
    path.write_text('{"victim": {"seed": 0}}\n')
    return path


def test_symlink_at_final_json_is_replaced_not_written_through(tmp_path: Path,
                                                               victim: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "final.json").symlink_to(victim)
    before = victim.read_bytes()
    FinalStore(run / "final.json").put("m1", entry(1))
    assert victim.read_bytes() == before
    assert not (run / "final.json").is_symlink() and (run / "final.json").is_file()
    assert json.loads((run / "final.json").read_text())["m1"] == entry(1)


def test_symlink_at_the_temporary_name_is_not_followed(tmp_path: Path, victim: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    run.mkdir()
    store = FinalStore(run / "final.json")
    store.put("m1", entry(1))
    old = (run / "final.json").read_bytes()
    # The temporary name is random; fix it so that the planted link sits exactly there.
    monkeypatch.setattr(_files, "secrets", SimpleNamespace(token_hex=lambda n: "feedf00d"))
    planted = run / f".final.json.{os.getpid()}.feedf00d.tmp"
    planted.symlink_to(victim)
    before = victim.read_bytes()
    with pytest.raises(StorageError, match=r"final\.json: cannot write"):
        store.put("m2", entry(2))
    assert victim.read_bytes() == before
    assert (run / "final.json").read_bytes() == old and planted.is_symlink()


def test_symlink_at_the_lock_file_is_not_followed(tmp_path: Path, victim: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "final.json.lock").symlink_to(victim)
    before = victim.read_bytes()
    with pytest.raises(StorageError, match=r"final\.json\.lock: cannot take the lock"):
        FinalStore(run / "final.json", lock_timeout=2).put("m1", entry(1))
    assert victim.read_bytes() == before
    assert not (run / "final.json").exists()


def test_write_failing_half_way_leaves_final_json_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "final.json"
    store = FinalStore(path)
    for seed in range(3):
        store.put(f"m{seed}", entry(seed))
    before = path.read_bytes()
    # The child may write 8 KiB per file; the new content is four times that.
    out = run_writer("fsize", str(path), "8192")
    assert out.startswith(f"StorageError: {path}: write failed, the file is unchanged: ")
    assert "too large" in out.lower()
    assert path.read_bytes() == before
    assert tmp_files(tmp_path) == []  # the partial temporary file was removed
    assert store.put("m3", entry(3)) is False  # and nothing blocks the next writer


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every account can reach (pytest's own temporary folders are private)."""
    with tempfile.TemporaryDirectory(prefix="final-store-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


@pytest.mark.parametrize("lock_file", ["absent", "writable"])
def test_read_only_folder(open_folder: Path, lock_file: str) -> None:
    run = open_folder / "run"
    run.mkdir()
    store = FinalStore(run / "final.json")
    store.put("old", entry(1))
    lock = run / "final.json.lock"
    if lock_file == "absent":
        lock.unlink()
    else:
        lock.chmod(0o666)  # the lock can be taken; only the folder refuses new files
    before = (run / "final.json").read_bytes()
    names = sorted(p.name for p in run.iterdir())
    scratch = open_folder / "scratch"
    scratch.mkdir()
    # As root, permissions do not apply: the child then drops to the nobody account.
    run.chmod(0o555)
    try:
        out = run_writer("readonly", str(run), str(scratch))
    finally:
        run.chmod(0o755)
    if out.startswith("SKIP:"):
        pytest.skip(out.strip())
    assert out.splitlines()[0] == "read ['old']"  # reads still work
    message = out.splitlines()[1]
    if lock_file == "absent":
        assert message.startswith("StorageError: final.json.lock: cannot take the lock: ")
    else:
        assert message.startswith("StorageError: final.json: cannot write: ")
    assert "Permission denied" in message
    assert (run / "final.json").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == names


def test_lock_of_a_killed_holder_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "final.json"
    holder = subprocess.Popen([sys.executable, str(WRITER), "hold-lock", str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert read_line(holder, timeout=30) == "locked\n"
        # While the holder lives, the lock is real.
        with pytest.raises(StorageError, match=r"final\.json\.lock: lock still held"):
            FinalStore(path, lock_timeout=0.3).put("m1", entry(1))
        assert not path.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    assert (tmp_path / "final.json.lock").exists()  # left behind by the killed holder
    FinalStore(path, lock_timeout=10).put("m1", entry(1))
    assert FinalStore(path).get("m1") == entry(1)
