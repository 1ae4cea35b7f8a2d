"""Compile or load mechanisms in a fresh process (NEURON loads one build per process).

Usage:
    python _load_mechanisms_child.py compile RUN_ROOT GO_FILE
        Waits until GO_FILE exists (so that several children start compiling together),
        compiles the run root's mechanisms and prints one JSON line:
        {"build_dir": ..., "ran_nrnivmodl": true|false}.
    python _load_mechanisms_child.py load BUILD_DIR MECHANISM [OTHER_BUILD_DIR]
        Loads BUILD_DIR (twice: the second load must be a no-op), inserts MECHANISM and
        ``pas`` into a fresh section, drives it with a current step and prints one JSON line
        with what it saw; with OTHER_BUILD_DIR, also tries to load that second build.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from science_project import EMODEL  # noqa: E402

from luigi_emodel import LocalAccessPoint  # noqa: E402
from luigi_emodel.exceptions import MechanismError  # noqa: E402
from luigi_emodel.science.mechanisms import compile_mechanisms, load_mechanisms  # noqa: E402


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def compile_when_told(root: Path, go_file: Path) -> None:
    messages = _Messages()
    logger = logging.getLogger("luigi_emodel.science.mechanisms")
    logger.addHandler(messages)
    logger.setLevel(logging.INFO)
    access_point = LocalAccessPoint(EMODEL, emodel_dir=root)
    deadline = time.monotonic() + 60
    while not go_file.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the go file never appeared")
        time.sleep(0.005)
    build_dir = compile_mechanisms(access_point)
    ran = any(m.startswith("compiling") for m in messages.messages)
    print(json.dumps({"build_dir": str(build_dir), "ran_nrnivmodl": ran}), flush=True)


def load_and_insert(build_dir: Path, mechanism: str, other: Path | None) -> None:
    load_mechanisms(build_dir)
    load_mechanisms(build_dir)  # a second load of the same build is a no-op, not a crash
    from neuron import h

    h.load_file("stdrun.hoc")
    section = h.Section(name="probe")
    section.L = section.diam = 20.0
    section.insert("pas")
    section.insert(mechanism)
    segment = section(0.5)
    gbar_names = [var.name() for var in getattr(segment, mechanism)
                  if var.name().endswith(f"bar_{mechanism}")]
    clamp = h.IClamp(segment)
    clamp.delay, clamp.dur, clamp.amp = 5.0, 20.0, 0.5
    v = h.Vector().record(segment._ref_v)
    h.finitialize(-70.0)
    h.continuerun(30.0)
    result: dict[str, object] = {
        "gbar_names": gbar_names,
        "gbar": getattr(segment, gbar_names[0]) if gbar_names else None,
        "peak_v": float(v.max()),
    }
    if other is not None:
        try:
            load_mechanisms(other)
            result["second_build"] = "loaded"
        except MechanismError as error:
            result["second_build"] = f"refused: {error}"
    print(json.dumps(result), flush=True)


def main() -> None:
    mode = sys.argv[1]
    if mode == "compile":
        compile_when_told(Path(sys.argv[2]), Path(sys.argv[3]))
    elif mode == "load":
        other = Path(sys.argv[4]) if len(sys.argv) > 4 else None
        load_and_insert(Path(sys.argv[2]), sys.argv[3], other)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
