"""Run one optimisation in a child process (for the kill/resume and stop tests).

Usage: python _optimise_child.py RUN_ROOT SEED [--stop-after GEN]
Prints "gen <k>" after every committed generation and "done <completed>" at the end.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from science_project import EMODEL  # noqa: E402

from luigi_emodel import LocalAccessPoint  # noqa: E402
from luigi_emodel.science.optimisation import run_optimisation  # noqa: E402


def main() -> None:
    root, seed = Path(sys.argv[1]), int(sys.argv[2])
    stop_after = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--stop-after" else None
    stop = threading.Event()

    def progress(generation: int, max_ngen: int, best: float | None) -> None:
        print(f"gen {generation}", flush=True)
        if stop_after is not None and generation >= stop_after:
            stop.set()

    ap = LocalAccessPoint(EMODEL, emodel_dir=root)
    outcome = run_optimisation(ap, seed, progress=progress, stop_event=stop)
    print(f"done {outcome.completed} {outcome.generation}", flush=True)


if __name__ == "__main__":
    main()
