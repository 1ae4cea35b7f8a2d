"""Compile the run root's .mod files with ``nrnivmodl`` and load them into NEURON, once.

Compilation is idempotent (keyed by a hash of the .mod files' names and contents), guarded
by a file lock so that parallel workers never compile at once, runs ``nrnivmodl`` as a
subprocess in the build folder (never ``os.chdir``), and reports the compiler's output when
it fails. The build folder is ``.luigi_emodel/mechanisms/<hash>/`` under the run root; the
architecture sub-folder (``x86_64``, ``aarch64``, ...) is detected, not assumed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import filelock

from luigi_emodel.access_point.local import LocalAccessPoint
from luigi_emodel.exceptions import MechanismError

__all__ = [
    "compile_mechanisms",
    "compiled_mechanisms_dir",
    "load_mechanisms",
    "mechanisms_hash",
    "mechanisms_up_to_date",
]

logger = logging.getLogger(__name__)

_LIBRARY_NAMES = ("libnrnmech.so", "libnrnmech.dylib", "nrnmech.dll")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # nrnivmodl colours its progress lines
_loaded: dict[str, Path] = {}  # hash -> folder loaded in this process
_load_lock = threading.Lock()


def mechanisms_hash(mod_files: list[Path]) -> str:
    """A short hash of the .mod files' names and contents."""
    digest = hashlib.sha256()
    for path in sorted(mod_files, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _mod_files(access_point: LocalAccessPoint) -> list[Path]:
    folder = access_point.get_mechanisms_directory()
    if folder is None:
        return []
    return sorted(folder.glob("*.mod"))


def _find_library(build_dir: Path) -> Path | None:
    for arch_dir in sorted(p for p in build_dir.iterdir() if p.is_dir()):
        for name in _LIBRARY_NAMES:
            for candidate in (arch_dir / name, arch_dir / ".libs" / name):
                if candidate.is_file():
                    return candidate
    return None


def _nrnivmodl() -> str:
    beside_python = Path(sys.executable).parent / "nrnivmodl"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("nrnivmodl")
    if found is None:
        raise MechanismError("nrnivmodl not found: install NEURON (pip install neuron)")
    return found


def compiled_mechanisms_dir(access_point: LocalAccessPoint) -> Path | None:
    """The build folder of the current .mod files if they are compiled, else None."""
    mod_files = _mod_files(access_point)
    if not mod_files:
        return None
    build_dir = access_point.state_dir("mechanisms", mechanisms_hash(mod_files))
    if build_dir.is_dir() and _find_library(build_dir) is not None:
        return build_dir
    return None


def compile_mechanisms(access_point: LocalAccessPoint) -> Path | None:
    """Compile the run root's mechanisms unless already compiled; returns the build folder.

    Returns None when the run root has no .mod files (NEURON's built-in mechanisms only).

    Raises:
        MechanismError: ``nrnivmodl`` failed; the message names the .mod file(s) the compiler
            complained about and ends with the compiler's output.
    """
    mod_files = _mod_files(access_point)
    if not mod_files:
        return None
    access_point.get_available_mechanisms()  # a file without SUFFIX fails here, named
    build_dir = access_point.state_dir("mechanisms", mechanisms_hash(mod_files))
    lock_path = access_point.state_dir("mechanisms.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(lock_path, timeout=600):
        if build_dir.is_dir() and _find_library(build_dir) is not None:
            return build_dir
        staging = build_dir.with_name(build_dir.name + f".building-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        mod_copy = staging / "mod"
        mod_copy.mkdir(parents=True)
        for path in mod_files:
            shutil.copy2(path, mod_copy / path.name)
        logger.info("compiling %d mechanisms in %s", len(mod_files), build_dir)
        result = subprocess.run(
            [_nrnivmodl(), "mod"], cwd=staging, capture_output=True, text=True, check=False
        )
        if result.returncode != 0 or _find_library(staging) is None:
            output = _ANSI_ESCAPE.sub("", result.stdout + result.stderr).strip()
            shutil.rmtree(staging, ignore_errors=True)
            raise _compile_error(mod_files, output, result.returncode)
        shutil.rmtree(build_dir, ignore_errors=True)
        os.replace(staging, build_dir)
    return build_dir


def _compile_error(mod_files: list[Path], output: str, returncode: int) -> MechanismError:
    """The error of a failed build: names the .mod files the errors are about, shows them."""
    lines = output.splitlines()
    # nrnivmodl prints every file's name while translating and compiling, so only lines that
    # report an error say which file is at fault: nocmodl's "... in file X.mod", the C++
    # compiler's "x86_64/X.cpp:12:5: error: ..." and make's "[...: X.o] Error 1".
    error_lines = [line for line in lines if "error" in line.lower()]
    culprits = [
        path.name for path in mod_files
        if any(re.search(rf"\b{re.escape(path.stem)}\.(mod|cpp|c|o)\b", line)
               for line in error_lines)
    ]
    where = ", ".join(f"mechanisms/{name}" for name in culprits) or "mechanisms/"
    # The compiler's own diagnostics first (they may be far from the end of a long output),
    # then the tail of the output for context.
    # (Not nrnivmodl's own NOTE on errors, nor the Python traceback of its wrapper.)
    diagnostics = [line for line in lines if re.search(r"error|illegal|undefined", line, re.I)
                   and not line.startswith(("NOTE:", "Traceback", "subprocess.", "  File "))
                   and "CalledProcessError" not in line]
    return MechanismError(
        f"{where}: nrnivmodl failed (exit {returncode}):\n"
        + "\n".join(diagnostics[:20])
        + "\n--- nrnivmodl output (end) ---\n"
        + "\n".join(lines[-40:])
    )


def load_mechanisms(build_dir: Path | None) -> None:
    """Load compiled mechanisms into this process's NEURON, once.

    Loading the same library twice crashes NEURON, and two different builds define the
    same mechanism names, so a process that already loaded another build is refused.
    """
    if build_dir is None:
        return
    key = build_dir.name
    with _load_lock:
        if key in _loaded:
            return
        if _loaded:
            other = next(iter(_loaded.values()))
            raise MechanismError(
                f"{build_dir}: this process already loaded other mechanisms ({other}); "
                f"NEURON cannot load a second build of the same mechanisms: start a new process"
            )
        library = _find_library(build_dir)
        if library is None:
            raise MechanismError(f"{build_dir}: no compiled library: compile the mechanisms first")
        from neuron import h

        if not h.nrn_load_dll(str(library)):
            raise MechanismError(f"{library}: NEURON could not load the compiled mechanisms")
        _loaded[key] = build_dir


def mechanisms_up_to_date(access_point: LocalAccessPoint) -> bool:
    """True when the run root has no .mod files or their current version is compiled."""
    return not _mod_files(access_point) or compiled_mechanisms_dir(access_point) is not None
