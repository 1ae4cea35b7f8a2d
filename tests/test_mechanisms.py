"""Mechanism compilation with the real nrnivmodl, and loading in fresh processes.

NEURON loads one build of a set of mechanisms per process, so every test that loads compiled
mechanisms does it in a child process (``tests/_load_mechanisms_child.py``).
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from science_project import EMODEL, make_hh_project
from luigi_emodel import LocalAccessPoint
from luigi_emodel.exceptions import MechanismError
from luigi_emodel.science.mechanisms import (
    compile_mechanisms,
    compiled_mechanisms_dir,
    mechanisms_hash,
)

TESTS = Path(__file__).parent
REPO = TESTS.parent
EXAMPLE_MECHANISMS = REPO / "configs" / "example" / "mechanisms"
LEAK_MOD = TESTS / "data" / "mechanisms" / "leakx.mod"
CHILD = TESTS / "_load_mechanisms_child.py"

# nocmodl rejects this file (a statement cut short in BREAKPOINT).
SYNTAX_ERROR_MOD = """\
NEURON {
    SUFFIX Brokenx
    RANGE gbar
}
PARAMETER { gbar = 0.1 }
BREAKPOINT {
    gbar = gbar * 2 +
}
"""
# nocmodl translates this one, the C++ compiler rejects it (raw C that NEURON 9 refuses).
CXX_ERROR_MOD = """\
NEURON {
    SUFFIX Brokenx
    RANGE gbar
}
PARAMETER { gbar = 0.1 }
BREAKPOINT {
VERBATIM
    undeclared_c_helper(gbar);
ENDVERBATIM
}
"""


def run_root(root: Path, mod_files: list[Path]) -> LocalAccessPoint:
    """A run root (the hh test project) whose mechanisms/ folder holds these .mod files."""
    make_hh_project(root)
    (root / "mechanisms").mkdir()
    for path in mod_files:
        shutil.copy2(path, root / "mechanisms" / path.name)
    return LocalAccessPoint(EMODEL, emodel_dir=root)


def tree_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its modification time and inode."""
    return {
        str(path.relative_to(folder)): (path.stat().st_mtime_ns, path.stat().st_ino)
        for path in folder.rglob("*") if path.is_file()
    }


def child(*args: str, timeout: float = 120) -> dict:
    result = subprocess.run([sys.executable, str(CHILD), *args], capture_output=True,
                            text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def example_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalAccessPoint, Path]:
    """The example cell's four channels compiled once for the module (about 7 s)."""
    access_point = run_root(tmp_path_factory.mktemp("example"),
                            sorted(EXAMPLE_MECHANISMS.glob("*.mod")))
    build_dir = compile_mechanisms(access_point)
    assert build_dir is not None
    return access_point, build_dir


def test_compiled_library_is_in_the_detected_architecture_folder(
        example_build: tuple[LocalAccessPoint, Path]) -> None:
    access_point, build_dir = example_build
    mod_files = sorted((access_point.emodel_dir / "mechanisms").glob("*.mod"))
    assert build_dir == access_point.emodel_dir / ".luigi_emodel" / "mechanisms" / \
        mechanisms_hash(mod_files)
    arch_dir = build_dir / platform.machine()
    libraries = [p for p in arch_dir.rglob("*") if p.name.startswith(("libnrnmech.", "nrnmech."))]
    assert libraries, f"no compiled library under {arch_dir}: {sorted(build_dir.iterdir())}"
    # nrnivmodl ran in the build folder, not in the caller's working folder.
    assert not (Path.cwd() / platform.machine() / "NaTx.cpp").exists()
    assert sorted(p.name for p in (build_dir / "mod").glob("*.mod")) == \
        ["Ihx.mod", "Kdrx.mod", "Kmx.mod", "NaTx.mod"]
    assert compiled_mechanisms_dir(access_point) == build_dir
    # No staging folder is left beside the build.
    assert [p.name for p in build_dir.parent.iterdir()] == [build_dir.name]


def test_second_compilation_rebuilds_nothing(example_build: tuple[LocalAccessPoint, Path],
                                             caplog: pytest.LogCaptureFixture) -> None:
    access_point, build_dir = example_build
    before = tree_state(build_dir)
    with caplog.at_level(logging.INFO, logger="luigi_emodel.science.mechanisms"):
        again = compile_mechanisms(access_point)
    assert again == build_dir
    assert not [r for r in caplog.records if r.getMessage().startswith("compiling")]
    assert tree_state(build_dir) == before  # not one file written or replaced


def test_two_processes_compiling_at_once_build_once(tmp_path: Path) -> None:
    root = tmp_path / "run"
    run_root(root, [LEAK_MOD])
    go = tmp_path / "go"
    children = [
        subprocess.Popen([sys.executable, str(CHILD), "compile", str(root), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    go.touch()  # both children are waiting for it, imports done
    outputs = []
    for process in children:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert outputs[0]["build_dir"] == outputs[1]["build_dir"]
    assert sorted(o["ran_nrnivmodl"] for o in outputs) == [False, True]
    build_dir = Path(outputs[0]["build_dir"])
    assert [p.name for p in build_dir.parent.iterdir()] == [build_dir.name]
    assert list((build_dir / platform.machine()).rglob("libnrnmech.*"))


@pytest.mark.parametrize("source, compiler_text", [
    (SYNTAX_ERROR_MOD, "Illegal"),
    (CXX_ERROR_MOD, "undeclared_c_helper"),
], ids=["nocmodl", "c++"])
def test_mod_file_that_does_not_compile(tmp_path: Path, source: str,
                                        compiler_text: str) -> None:
    access_point = run_root(tmp_path, [LEAK_MOD])
    (tmp_path / "mechanisms" / "Brokenx.mod").write_text(source)
    with pytest.raises(MechanismError) as caught:
        compile_mechanisms(access_point)
    message = str(caught.value)
    first_line = message.splitlines()[0]
    assert first_line.startswith("mechanisms/Brokenx.mod: nrnivmodl failed"), message
    assert "leakx" not in first_line  # the good file is not blamed
    assert compiler_text in message
    assert "error" in message.lower()
    assert "\x1b[" not in message  # no terminal colour codes
    # Nothing half-built is left: neither a build folder nor a staging folder.
    builds = tmp_path / ".luigi_emodel" / "mechanisms"
    assert not builds.exists() or not any(builds.iterdir())
    assert compiled_mechanisms_dir(access_point) is None


def test_compiled_natx_loads_and_works_in_a_fresh_process(
        example_build: tuple[LocalAccessPoint, Path]) -> None:
    _, build_dir = example_build
    seen = child("load", str(build_dir), "NaTx")
    assert seen["gbar_names"] == ["gNaTxbar_NaTx"]
    assert seen["gbar"] > 0
    # A depolarising step opens the compiled sodium channel: the membrane overshoots 0 mV,
    # which a passive section driven by 0.5 nA cannot do.
    assert seen["peak_v"] > 0.0


def test_changed_mod_file_gives_a_new_build(tmp_path: Path) -> None:
    access_point = run_root(tmp_path, [LEAK_MOD])
    first = compile_mechanisms(access_point)
    assert first is not None
    mod = tmp_path / "mechanisms" / "leakx.mod"
    mod.write_text(mod.read_text().replace("el = -70 (mV)", "el = -65 (mV)"))
    assert compiled_mechanisms_dir(access_point) is None  # the old build is stale
    second = compile_mechanisms(access_point)
    assert second is not None and second != first
    assert second.parent == first.parent and first.is_dir()
    assert "el = -65" in (second / "mod" / "leakx.mod").read_text()
    assert compiled_mechanisms_dir(access_point) == second
    # One process may hold one build: loading the other one is refused with a clear error.
    seen = child("load", str(second), "leakx", str(first))
    assert seen["gbar_names"] == ["gleakxbar_leakx"]
    assert seen["second_build"].startswith(f"refused: {first}")
    assert "start a new process" in seen["second_build"]
