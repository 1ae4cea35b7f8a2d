"""luigid that saves its state every few seconds, so that a crash loses almost nothing.

Plain ``luigid`` keeps its task graph in memory and writes it to ``--state-path`` only when
it stops cleanly. After a crash (SIGKILL, a lost node) a restarted luigid knows no task: the
workers finish what they run, find nothing more to do and exit (code 25), and the command
must be run again. This server is luigid with one addition: every ``save_every`` seconds the
state is written to the state path atomically (temporary file, fsync, rename), so a
restarted server picks the graph up where it was and the workers carry on.

Started with ``luigi-emodel luigid`` (same options as ``luigid``, plus ``--save-every``).
"""

from __future__ import annotations

import functools
import logging
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from luigi_emodel.access_point._files import atomic_write_bytes

__all__ = ["run_scheduler", "save_state"]

logger = logging.getLogger(__name__)


def save_state(scheduler: Any) -> None:
    """Write the scheduler's state to its state path atomically (a crash mid-write leaves the
    previous state, never a torn pickle)."""
    state = scheduler._state  # noqa: SLF001 - luigi exposes no public accessor
    path = Path(state._state_path)  # noqa: SLF001
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, pickle.dumps(state.get_state()))
    except Exception:  # never let a failed save stop the scheduler
        logger.warning("could not save the scheduler state to %s", path, exc_info=True)


def _serve(api_port: int, address: str | None, unix_socket: str | None,
           save_every: float) -> None:
    import luigi.server
    import tornado.ioloop
    from luigi.scheduler import Scheduler

    scheduler = Scheduler()
    saver = tornado.ioloop.PeriodicCallback(functools.partial(save_state, scheduler),
                                            save_every * 1000)
    saver.start()
    luigi.server.run(api_port=api_port, address=address, unix_socket=unix_socket,
                     scheduler=scheduler)


def run_scheduler(*, port: int = 8082, address: str | None = None,
                  unix_socket: str | None = None, state_path: str | None = None,
                  background: bool = False, pidfile: str | None = None,
                  logdir: str | None = None, save_every: float = 10.0) -> None:
    """Run luigid (in the foreground, or as a daemon with ``background``), saving its state
    every ``save_every`` seconds."""
    import luigi.configuration
    import luigi.process
    from luigi.setup_logging import DaemonLogging

    if state_path:
        luigi.configuration.get_config().set("scheduler", "state_path", state_path)
    # The options luigid gives its logging set-up.
    DaemonLogging.setup(SimpleNamespace(
        background=background, pidfile=pidfile, logdir=logdir, state_path=state_path,
        address=address, unix_socket=unix_socket, port=port))
    serve = functools.partial(_serve, save_every=save_every)
    if background:
        luigi.process.daemonize(serve, api_port=port, address=address, pidfile=pidfile,
                                logdir=logdir, unix_socket=unix_socket)
    else:
        serve(api_port=port, address=address, unix_socket=unix_socket)
