"""The ``luigi-emodel`` console script: what the ``luigi`` command itself does not give.

Pipeline runs stay ``luigi --module luigi_emodel.tasks ...``; this script holds the helpers
around them, one sub-command each::

    luigi-emodel schema DIR      write the JSON Schema of every input and output file kind

Exit codes: 0 on success, 1 when the package reports bad input (an :class:`EModelError`),
2 for a wrong command line or an output that cannot be written. Errors are one message on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from luigi_emodel import __version__
from luigi_emodel.exceptions import EModelError
from luigi_emodel.schemas import FILE_KINDS

__all__ = ["build_parser", "main", "schema_document"]

PROG = "luigi-emodel"
#: The JSON Schema dialect pydantic generates.
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: Exit code for a command line or an output the user has to correct.
USAGE_ERROR = 2
#: Exit code for bad input reported by the package (a file, a field, a value).
INPUT_ERROR = 1


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


if __name__ == "__main__":
    sys.exit(main())
