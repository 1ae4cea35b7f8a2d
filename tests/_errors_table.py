"""Regenerate docs/errors.md from the bad-input cases of tests/test_bad_input.py.

Usage (from the repository root)::

    .venv/bin/python tests/_errors_table.py          # rewrite docs/errors.md
    .venv/bin/python tests/_errors_table.py --check  # exit 1 if it is out of date

Each case is run for real, as the test does, and the first line of its message goes into the
table, with the temporary run root shown as ``<run root>``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # run as a script: make conftest and test_bad_input importable
    sys.path.insert(0, str(TESTS))

from test_bad_input import CASES, Case, first_line, prepare, trigger  # noqa: E402

DOC = TESTS.parent / "docs" / "errors.md"

HEADER = """\
# Errors you may see, and what caused them

Every error raised on purpose by luigi_emodel is an `EModelError` (see
`luigi_emodel/exceptions.py`): `ConfigurationError` for bad input (with `MissingFileError` and
`UnknownEModelError`), `StorageError` for a stored file that cannot be read or written safely,
`MechanismError` for a `.mod` file, and so on. A message starts with the file, relative to the
run root (`emodel_dir`), then the field path inside it, then what was expected:

    config/params/cell.json: parameters[4].value: expected [low, high] or a number

Inputs that are not files are named for what they are: `metadata` for the e-model's
metadata (Luigi parameters, or arguments of the access point), `model configuration path` for a
path given to a store call. When a file has several problems, each is on its own line; the
table shows the first line. Nothing already stored is changed when one of these errors is
raised: `final.json` in particular stays byte for byte as it was.

The table lists each bad input of `tests/test_bad_input.py` with the exception and the first
line of its message (`<run root>` stands for the run root, whose paths are those of the test
project: recipe `cADtest`, iteration `it1`). Do not edit the table by hand: it is regenerated,
and checked by the test suite, with

    .venv/bin/python tests/_errors_table.py

| input | what you see |
|---|---|
"""


def _cell(text: str) -> str:
    """Text for a Markdown table cell, in a code span (pipes escaped)."""
    text = text.replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def run(case: Case) -> str:
    """``ExceptionClass: first line of the message`` for one case."""
    with tempfile.TemporaryDirectory(prefix="luigi_emodel_errors_") as base:
        root = prepare(case, Path(base))
        import pytest  # the cases use pytest.raises; imported here to keep the import cheap

        try:
            error = trigger(case, root)
        except pytest.fail.Exception as failure:
            raise SystemExit(f"case {case.id}: no error raised ({failure})") from None
        line = first_line(error).replace(str(root), "<run root>")
        return f"{type(error).__name__}: {line}"


CLI_HEADER = """
## The `luigi` and `luigi-emodel` commands

Bad command lines and luigi.cfg options, from `tests/test_bad_input_cli.py`: the command ends
with a failure exit code before any task runs, nothing is written, and its output contains
the text shown (`<run root>` stands for the run root, `<sandbox>` for its folder).

| input | what you see (contained in the output) |
|---|---|
"""


def _cli_rows() -> list[str]:
    from test_bad_input_cli import CASES as LUIGI_CASES
    from test_bad_input_cli import CLI_CASES

    rows = []
    for case in LUIGI_CASES:
        parts = [" ".join(case.args)] + [f"[{section}] {option} = {value}"
                                         for section, option, value in case.config]
        what = "`luigi ... EModelCreation " + parts[0] + "`" + "".join(
            f", luigi.cfg `{part}`" for part in parts[1:])
        for text in case.expected:
            shown = text.replace("{root}", "<run root>").replace("{sandbox}", "<sandbox>")
            what = what.replace("|", "\\|")
            rows.append(f"| {what} | {_cell(shown)} |")
    for case in CLI_CASES:
        args = " ".join(case.args).replace("{root}", "<run root>")
        rows.append(f"| `luigi-emodel {args}` (exit {case.exit_code}) | {_cell(case.expected)} |")
    return rows


def render() -> str:
    """The whole of docs/errors.md."""
    rows = [f"| {case.what} | {_cell(run(case))} |" for case in CASES]
    return HEADER + "\n".join(rows) + "\n" + CLI_HEADER + "\n".join(_cli_rows()) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DOC.is_file() or DOC.read_text() != text:
            print(f"{DOC} is out of date: run {Path(__file__).name} to regenerate it",
                  file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"wrote {DOC} ({len(CASES)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
