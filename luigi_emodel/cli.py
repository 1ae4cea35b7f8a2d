"""The ``luigi-emodel`` console script: what the ``luigi`` command itself does not give.

Pipeline runs stay ``luigi --module luigi_emodel.tasks ...``; this script holds the helpers
around them, one sub-command each::

    luigi-emodel schema DIR      write the JSON Schema of every input and output file kind
    luigi-emodel status          where the seeds of each e-model of a run root stand
    luigi-emodel init DIR        write a new project skeleton to fill in

Exit codes: 0 on success, 1 when the package reports bad input (an :class:`EModelError`)
or ``init`` would overwrite a file, 2 for a wrong command line or an output that cannot be
written (141 when the reader of the output goes away, e.g. ``| head``). Errors are one message on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from luigi_emodel import __version__
from luigi_emodel.access_point.local import LocalAccessPoint
from luigi_emodel.exceptions import ConfigurationError, EModelError
from luigi_emodel.schemas import FILE_KINDS
from luigi_emodel.status import emodel_status, format_status

__all__ = ["build_parser", "main", "project_files", "schema_document"]

PROG = "luigi-emodel"
#: The JSON Schema dialect pydantic generates.
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: Exit code for a command line or an output the user has to correct.
USAGE_ERROR = 2
#: Exit code for bad input reported by the package (a file, a field, a value).
INPUT_ERROR = 1
#: Exit code when the reader of the output went away (128 + SIGPIPE, as shells report it).
BROKEN_PIPE = 141


class CommandError(Exception):
    """A failure of a sub-command that ends it with a message and an exit code."""

    def __init__(self, message: str, exit_code: int = USAGE_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so that ``main`` returns the code."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(f"{message}\n{self.format_usage().rstrip()}")


def schema_document(kind: str) -> dict[str, Any]:
    """The JSON Schema of one file kind (a key of :data:`luigi_emodel.schemas.FILE_KINDS`).

    Example:
        >>> schema_document("recipe")["additionalProperties"]
        False
    """
    schema = FILE_KINDS[kind].model_json_schema()
    # "$schema" first, so that editors and validators pick the right dialect.
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def _cmd_schema(args: argparse.Namespace) -> int:
    """Write ``<kind>.schema.json`` for every file kind into ``args.directory``."""
    directory: Path = args.directory
    if directory.exists() and not directory.is_dir():
        raise CommandError(f"{directory}: exists and is not a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"{directory}: cannot create the folder: "
                           f"{error.strerror or error}") from None
    written = []
    for kind in FILE_KINDS:
        path = directory / f"{kind}.schema.json"
        text = json.dumps(schema_document(kind), indent=2) + "\n"
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as error:
            raise CommandError(f"{path}: cannot write: {error.strerror or error}") from None
        written.append(path)
    if not args.quiet:
        for path in written:
            print(path)
    return 0


def _metadata_access_point(args: argparse.Namespace, emodel: str) -> LocalAccessPoint:
    """The access point of ``emodel`` with the metadata and paths of the command line."""
    return LocalAccessPoint(
        emodel, emodel_dir=args.emodel_dir, recipes_path=args.recipes_path,
        final_path=args.final_path, iteration_tag=args.iteration_tag, etype=args.etype,
        ttype=args.ttype, mtype=args.mtype, species=args.species,
        brain_region=args.brain_region,
    )


def _cmd_status(args: argparse.Namespace) -> int:
    """Print one table per e-model (or the rows as JSON with ``--json``)."""
    if args.emodel is not None:
        emodels = [args.emodel]
    else:
        emodels = LocalAccessPoint.recipe_emodels(args.emodel_dir, args.recipes_path)
        if not emodels:
            raise ConfigurationError(f"{args.recipes_path}: no recipe (run root "
                                     f"{args.emodel_dir})")
    # Every e-model is read before anything is printed, so that an error leaves no half table.
    statuses = [emodel_status(_metadata_access_point(args, emodel)) for emodel in emodels]
    if args.json:
        print(json.dumps({"emodels": [s.as_dict() for s in statuses]}, indent=2,
                         allow_nan=False))
    else:
        print("\n\n".join(format_status(s) for s in statuses))
    return 0


#: A NEURON template name (the e-model name becomes one in the exported hoc).
_EMODEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: Folders of a new project (the recipe's morph_path is one of them).
PROJECT_FOLDERS = ("mechanisms", "morphologies", "recordings")
#: The example morphology that ``init`` writes (to be replaced).
EXAMPLE_MORPHOLOGY = "example.swc"

_SWC = """\
# Example morphology written by `luigi-emodel init`: a soma and one dendrite, so that the
# project loads. Replace it by the reconstruction of your cell (see README.txt).
# columns: id type x y z radius parent (types: 1 soma, 2 axon, 3 basal, 4 apical dendrite)
1 1 0 0 0 10 -1
2 3 0 10 0 1.5 1
3 3 0 60 0 1.2 2
4 3 0 120 0 0.9 3
5 3 0 200 0 0.6 4
"""

_README = """\
New e-model project "{emodel}", written by `luigi-emodel init`.

What to fill in before a run (paths are relative to this folder, the run root):

1. morphologies/
   Put the reconstruction of your cell here (.swc or .asc) and name it in recipes.json,
   "{emodel}".morphology: [["<name>", "<file>"]]. The example.swc written here is only a
   soma and one dendrite, so that the project loads; it is no model of a real cell.

2. mechanisms/
   Put the NEURON .mod files of your ion channels here (they are compiled before the
   first simulation).

3. config/params/{emodel}.json
   The model: which mechanism goes where ("mechanisms"), and every parameter with its
   location ("all", "somatic", "axonal", "basal", "apical", "global", ...). A number is a
   fixed value, a pair [low, high] is a free parameter that the optimisation searches.
   It starts as a passive cell (pas everywhere, g_pas free): add your channels.

4. recordings/
   Put your patch-clamp recordings here (.ibw, .abf, .nwb, .txt, or .npz with arrays
   voltage [mV], current [nA] and scalar dt [ms]).

5. config/extract_config/{emodel}.json
   "files": one entry per recording file, e.g.
       {{"cell_name": "cell1", "filepath": "recordings/cell1_IDrest_1.ibw",
        "ecodes": {{"IDrest": {{"ljp": 14.0}}}},
        "other_metadata": {{"v_unit": "mV", "i_unit": "pA", "t_unit": "s"}}}}
   "targets": which e-feature to extract on which protocol at which amplitude (in % of
   each cell's rheobase, or in nA with extract_absolute_amplitudes) +/- tolerance. The
   targets written here are examples: keep those that fit your recordings.
   "protocols_rheobase": the protocols used to find each cell's rheobase.

6. recipes.json, "{emodel}".pipeline_settings
   Small defaults to try the pipeline: raise max_ngen, optimisation_params.offspring_size
   and n_model for a real run; validation_threshold is the highest score a validated
   model may have. config/features/{emodel}.json does not exist yet: the extraction
   writes it from the recordings and the targets.

Check a file against its JSON Schema with `luigi-emodel schema DIR` and your editor or
validator. Run the pipeline from this folder:

    luigi --module luigi_emodel.tasks EModelCreation --emodel {emodel} --local-scheduler

and follow it with

    luigi-emodel status --emodel {emodel}
"""


def project_files(emodel: str) -> dict[str, str]:
    """The files of a new project for ``emodel``: path (relative to the project) -> text.

    Example:
        >>> sorted(project_files("cell"))[:2]
        ['README.txt', 'config/extract_config/cell.json']
    """
    extract_config = f"config/extract_config/{emodel}.json"
    settings = {
        "path_extract_config": extract_config,
        "extract_absolute_amplitudes": False,
        "extraction_threshold_value_save": 1,
        "efel_settings": {"interp_step": 0.025, "strict_stiminterval": True,
                          "Threshold": -20.0},
        "optimiser": "IBEA",
        "optimisation_params": {"offspring_size": 20},
        "max_ngen": 20,
        "optimisation_timeout": 300.0,
        "validation_function": "max_score",
        "validation_threshold": 5.0,
        "validation_protocols": [],
        "n_model": 1,
        "optimisation_batch_size": 2,
        "max_n_batch": 2,
    }
    recipes = {emodel: {
        "morph_path": "morphologies",
        "morphology": [[Path(EXAMPLE_MORPHOLOGY).stem, EXAMPLE_MORPHOLOGY]],
        "params": f"config/params/{emodel}.json",
        "features": f"config/features/{emodel}.json",
        "pipeline_settings": settings,
    }}
    params = {
        "mechanisms": [{"name": "pas", "location": "all"}],
        "distributions": [],
        "parameters": [
            {"name": "v_init", "value": -70.0, "location": "global"},
            {"name": "celsius", "value": 34.0, "location": "global"},
            {"name": "cm", "value": 1.0, "location": "all"},
            {"name": "Ra", "value": 100.0, "location": "all"},
            {"name": "e_pas", "value": -70.0, "location": "all"},
            {"name": "g_pas", "value": [1e-5, 1e-3], "location": "all"},
        ],
    }

    def target(efeature: str, protocol: str, amplitude: float, tolerance: float) -> dict:
        return {"efeature": efeature, "protocol": protocol, "amplitude": amplitude,
                "tolerance": tolerance, "efeature_name": None, "weight": 1.0,
                "efel_settings": {"strict_stiminterval": True}}

    targets = {
        "emodel": emodel,
        "ttype": None,
        "files": [],
        "targets": [
            target("Spikecount", "IDrest", 150, 20),
            target("mean_frequency", "IDrest", 150, 20),
            target("AP_amplitude", "IDrest", 150, 20),
            target("Spikecount", "IDrest", 250, 20),
            target("voltage_base", "IDrest", 250, 20),
        ],
        "protocols_rheobase": ["IDrest"],
        "auto_targets": None,
        "additional_fitness_efeatures": None,
        "additional_fitness_protocols": None,
        "protocols_mapping": None,
    }

    def as_json(data: Any) -> str:
        return json.dumps(data, indent=2) + "\n"

    return {
        "README.txt": _README.format(emodel=emodel),
        "recipes.json": as_json(recipes),
        f"config/params/{emodel}.json": as_json(params),
        extract_config: as_json(targets),
        f"morphologies/{EXAMPLE_MORPHOLOGY}": _SWC,
    }


def _cmd_init(args: argparse.Namespace) -> int:
    """Write a new project skeleton into ``args.directory``; never overwrite a file."""
    directory: Path = args.directory
    emodel: str = args.emodel
    if not _EMODEL_NAME.fullmatch(emodel):
        raise CommandError(f"--emodel {emodel!r}: expected a NEURON template name (a letter, "
                           f"then letters, digits or '_')")
    if directory.exists() and not directory.is_dir():
        raise CommandError(f"{directory}: exists and is not a folder")
    files = project_files(emodel)
    # Check everything first: an existing file (or a folder where a file goes, and the
    # reverse) means nothing is written at all.
    taken = [directory / name for name in files if os.path.lexists(directory / name)]
    taken += [directory / name for name in PROJECT_FOLDERS
              if os.path.lexists(directory / name) and not (directory / name).is_dir()]
    if taken:
        raise CommandError(
            f"{directory}: not overwriting existing " + ", ".join(map(str, taken))
            + " (init writes a new project; choose another folder or move them away)",
            exit_code=INPUT_ERROR,
        )
    written = []
    try:
        for name in PROJECT_FOLDERS:
            (directory / name).mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "x", encoding="utf-8") as handle:  # "x": never replace a file
                handle.write(text)
            written.append(path)
    except FileExistsError as error:  # created by someone else since the check
        raise CommandError(f"{error.filename}: not overwriting an existing file",
                           exit_code=INPUT_ERROR) from None
    except OSError as error:
        raise CommandError(f"{error.filename or directory}: cannot write: "
                           f"{error.strerror or error}") from None
    if not args.quiet:
        for path in written:
            print(path)
        print(f"next: fill in the project as {directory / 'README.txt'} says")
    return 0


def _cmd_luigid(args: argparse.Namespace) -> int:
    from luigi_emodel.tasks.scheduler import run_scheduler

    if args.save_every <= 0:
        raise CommandError(f"--save-every: expected a positive number of seconds, got "
                          f"{args.save_every}")
    run_scheduler(port=args.port, address=args.address, unix_socket=args.unix_socket,
                  state_path=args.state_path, background=args.background,
                  pidfile=args.pidfile, logdir=args.logdir, save_every=args.save_every)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of the console script, one sub-parser per sub-command."""
    parser = _Parser(
        prog=PROG,
        description="Helpers around the e-model pipeline (runs use `luigi --module "
                    "luigi_emodel.tasks`).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    schema = commands.add_parser(
        "schema",
        help="write the JSON Schema of every file kind",
        description="Write one JSON Schema per file kind (" + ", ".join(FILE_KINDS)
                    + ") into DIR as <kind>.schema.json; DIR is created if needed.",
    )
    schema.add_argument("directory", metavar="DIR", type=Path, help="output folder")
    schema.add_argument("-q", "--quiet", action="store_true",
                        help="do not list the files written")
    schema.set_defaults(handler=_cmd_schema)

    status = commands.add_parser(
        "status",
        help="where the seeds of each e-model stand",
        description="For each e-model of recipes.json (or only --emodel), one row per seed "
                    "found (a checkpoint or a final.json entry): optimisation progress, best "
                    "score, validation verdict, SONATA export; then 'N validated of M checked "
                    "(n_model needed)'. Read only: safe while a run is going on.",
    )
    status.add_argument("--emodel", help="only this e-model (default: every recipe)")
    status.add_argument("--emodel-dir", default=".", metavar="DIR",
                        help="the run root (default: the working directory)")
    status.add_argument("--recipes-path", default="recipes.json", metavar="PATH",
                        help="recipes.json, relative to the run root (default: %(default)s)")
    status.add_argument("--final-path", default=None, metavar="PATH",
                        help="final.json, relative to the run root (default: final.json)")
    status.add_argument("--iteration-tag", default=None, metavar="TAG",
                        help="the iteration (default: none)")
    for name in ("etype", "ttype", "mtype", "species", "brain-region"):
        status.add_argument(f"--{name}", default=None, help=f"metadata: {name}")
    status.add_argument("--json", action="store_true",
                        help="print the rows as JSON instead of tables")
    status.set_defaults(handler=_cmd_status)

    init = commands.add_parser(
        "init",
        help="write a new project skeleton",
        description="Write recipes.json, the model configuration (a passive cell), the "
                    "targets configuration, an example morphology and the folders "
                    "mechanisms/, morphologies/, recordings/ into DIR, with a README.txt "
                    "saying what to fill in. Existing files are never overwritten.",
    )
    init.add_argument("directory", metavar="DIR", type=Path, help="project folder")
    init.add_argument("--emodel", default="my_emodel", metavar="NAME",
                      help="name of the e-model (default: %(default)s)")
    init.add_argument("-q", "--quiet", action="store_true",
                      help="do not list the files written")
    init.set_defaults(handler=_cmd_init)

    server = commands.add_parser(
        "luigid",
        help="luigid that saves its task graph every few seconds",
        description="The central Luigi scheduler (luigid, same options) that also writes its "
                    "state to --state-path every --save-every seconds, atomically: restarted "
                    "after a crash, it resumes the task graph and the workers carry on.",
    )
    server.add_argument("--background", action="store_true", help="run as a daemon")
    server.add_argument("--pidfile", help="write the pid to this file")
    server.add_argument("--logdir", help="log folder")
    server.add_argument("--state-path", help="the pickled state (saved regularly)")
    server.add_argument("--address", help="listening interface (e.g. 127.0.0.1)")
    server.add_argument("--unix-socket", help="listen on this unix socket")
    server.add_argument("--port", type=int, default=8082, help="listening port")
    server.add_argument("--save-every", type=float, default=10.0, metavar="SECONDS",
                        help="seconds between saves of the state (default: %(default)s)")
    server.set_defaults(handler=_cmd_luigid)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; returns the exit code.

    Args:
        argv: the arguments without the program name (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except CommandError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return error.exit_code
    except EModelError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return INPUT_ERROR
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (``luigi-emodel status | head``): stop quietly.
        # Point stdout at /dev/null so that the final flush at exit does not fail again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
