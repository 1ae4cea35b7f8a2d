"""Child processes for the final.json tests: each sub-command is one real process's behaviour.

Run as ``python tests/_writer.py <command> ...``; the tests start it with ``subprocess``.

Commands:
    store ROOT FIRST COUNT [--report] [--start-at EPOCH]
        Store seeds FIRST..FIRST+COUNT-1 through a LocalAccessPoint on run root ROOT (relative
        paths resolve against the working directory the child was started in). With
        ``--report`` print ``stored <seed>`` (flushed) after each store returns. With
        ``--start-at`` wait until that time (``time.time()``) first, so that writers started
        one after the other all store at once.
    hold-lock FINAL
        Take the write lock of FINAL, print ``locked`` and sleep until killed.
    fsize FINAL LIMIT
        Limit the size of files this process may write to LIMIT bytes (SIGXFSZ ignored, so a
        write past the limit fails with EFBIG) and store an entry bigger than that.
    readonly FOLDER SCRATCH
        Print ``read <keys>`` of FOLDER/final.json, which the caller made read-only, then
        store an entry into it. When running as root (where permissions do not apply) first
        drop to the ``nobody`` account, or print ``SKIP: <why>`` if that is refused.

``fsize`` and ``readonly`` report the store as ``StorageError: <message>`` when it raises
one, ``stored`` when it succeeds.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from pathlib import Path

from conftest import EMODEL, stored_entry
from luigi_emodel import LocalAccessPoint, StorageError
from luigi_emodel.access_point.final_store import FinalStore

#: The account a root process drops to when permissions must apply.
NOBODY = 65534


def store(root: str, first: int, count: int, report: bool, start_at: float | None) -> None:
    ap = LocalAccessPoint(EMODEL, emodel_dir=root, recipes_path="recipes.json",
                          species="rat", brain_region="SSCX", iteration_tag="it1")
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    for seed in range(first, first + count):
        ap.store_emodel(stored_entry(seed, score=float(seed)))
        if report:
            # One write(2) of a short line: a reader never sees half of it, even after SIGKILL.
            sys.stdout.write(f"stored {seed}\n")
            sys.stdout.flush()


def hold_lock(final: str) -> None:
    with FinalStore(Path(final)).locked():
        print("locked", flush=True)
        time.sleep(600)


def attempt(final_store: FinalStore, key: str, entry: dict) -> None:
    try:
        final_store.put(key, entry)
    except StorageError as error:
        print(f"StorageError: {error}", flush=True)
    else:
        print("stored", flush=True)


def fsize(final: str, limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    attempt(FinalStore(Path(final)), "big", {"blob": "x" * (limit * 4)})


def readonly(folder: str, scratch: str) -> None:
    # Import and run every code path once while still allowed to, so nothing needs loading
    # after dropping privileges (the interpreter's own files may be unreadable to nobody).
    FinalStore(Path(scratch) / "final.json").put("warm-up", {"seed": 0})
    os.chdir(folder)  # the folder is reached through the working directory, not its parents
    if os.geteuid() == 0:
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        except OSError as error:
            print(f"SKIP: cannot drop root privileges: {error}", flush=True)
            return
    final_store = FinalStore(Path("final.json"))
    print(f"read {sorted(final_store.entries())}", flush=True)
    attempt(final_store, "new", {"seed": 2})


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "store":
        options = args[3:]
        start_at = (float(options[options.index("--start-at") + 1])
                    if "--start-at" in options else None)
        store(args[0], int(args[1]), int(args[2]), "--report" in options, start_at)
    elif command == "hold-lock":
        hold_lock(args[0])
    elif command == "fsize":
        fsize(args[0], int(args[1]))
    elif command == "readonly":
        readonly(args[0], args[1])
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
