"""Bad input through the real ``luigi`` and ``luigi-emodel`` commands: a wrong command line or
luigi.cfg ends the command with a failure exit code and a message naming the option, the file
or the field, before any task runs; nothing is written in the run root or beside it, and
final.json keeps its bytes.

Every case gets a fresh sandbox folder holding the run root (the hh project with two stored
models) and its luigi.cfg; the commands run from the sandbox, so that a file written in the
working directory would be seen too. ``--no-lock`` keeps luigi's pid lock files (in
/tmp/luigi) out of the way of other runs of the same command.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from science_project import EMODEL, make_hh_project
from test_tasks import REPO, luigi_command, luigi_env, ran_tasks
from luigi_emodel import LocalAccessPoint

LUIGI_EMODEL = str(Path(sys.executable).with_name("luigi-emodel"))
#: Exit codes that mean "nothing failed" (luigi.cfg [retcode]): a bad input must not get one.
NOTHING_FAILED = {0, 10, 25}


def make_sandbox(tmp_path: Path) -> Path:
    """sandbox/run: the hh project with two models in final.json, and its luigi.cfg (the
    repository's, pointed at the run root). Returns the run root."""
    root = make_hh_project(tmp_path / "sandbox" / "run", max_ngen=1, n_model=1)
    ap = LocalAccessPoint(EMODEL, emodel_dir=root)
    for seed in (1, 2):
        ap.store_emodel({"seed": seed, "parameters": {"gnabar_hh.somaxon": 0.1 * seed},
                         "fitness": {"Step_100.soma.v.Spikecount": float(seed)}})
    config = (REPO / "luigi.cfg").read_text()
    (root / "luigi.cfg").write_text(config.replace("\nemodel_dir = .\n",
                                                  f"\nemodel_dir = {root}\n"))
    return root


def configure(root: Path, section: str, option: str, value: str) -> None:
    """Set one option of the run root's luigi.cfg."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(root / "luigi.cfg")
    parser[section][option] = value
    with open(root / "luigi.cfg", "w") as handle:
        parser.write(handle)


def fill(text: str, root: Path) -> str:
    """``{root}`` and ``{sandbox}`` in ``text`` replaced by the run root and its folder."""
    return text.replace("{root}", str(root)).replace("{sandbox}", str(root.parent))


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*"))}


@dataclass(frozen=True)
class Case:
    """One bad input to ``luigi ... EModelCreation``.

    Attributes:
        id: pytest id.
        args: replaces ``--emodel hhcell`` and adds options on the command line.
        config: (section, option, value) set in luigi.cfg; ``{root}`` and ``{sandbox}`` are
            replaced by the run root and its folder.
        expected: text that must appear in luigi's output (the option, file or field, and
            what is wrong).
    """

    id: str
    args: tuple[str, ...] = ("--emodel", EMODEL)
    config: tuple[tuple[str, str, str], ...] = ()
    expected: tuple[str, ...] = ()


CASES = [
    Case("unknown-emodel", args=("--emodel", "L5PC"),
         expected=("recipes.json: no recipe for emodel 'L5PC' (known: hhcell)",)),
    Case("emodel-dotdot", args=("--emodel", "../x"),
         expected=("emodel: '../x' is not a valid NEURON template name",)),
    Case("emodel-digit-first", args=("--emodel", "1abc"),
         expected=("emodel: '1abc' is not a valid NEURON template name",)),
    Case("iteration-tag-slash", args=("--emodel", EMODEL, "--iteration-tag", "a/b"),
         expected=("iteration_tag: 'a/b' is not a valid iteration tag",)),
    Case("seed-not-int", args=("--emodel", EMODEL, "--seed", "abc"),
         expected=("--seed: expected an integer, got 'abc'",)),
    Case("backend-unknown", config=(("EvaluationBackendConfig", "backend", "gpu"),),
         expected=("EvaluationBackendConfig.backend: gpu is not a valid choice",)),
    Case("workers-negative", config=(("EvaluationBackendConfig", "workers", "-1"),),
         expected=("EvaluationBackendConfig.workers: expected a positive integer, got -1",)),
    Case("emodel-dir-missing",
         config=(("EmodelAPIConfig", "emodel_dir", "{sandbox}/missing"),),
         expected=("recipes.json: recipes file not found (run root {sandbox}/missing)",)),
    Case("override-not-int",
         config=(("EmodelAPIConfig", "settings_override", '{"max_ngen": "ten"}'),),
         expected=("EmodelAPIConfig.settings_override.max_ngen: Input should be a valid "
                   "integer",)),
    Case("override-unknown-setting",
         config=(("EmodelAPIConfig", "settings_override", '{"nope": 1}'),),
         expected=("EmodelAPIConfig.settings_override.nope: Extra inputs are not permitted",)),
    Case("override-not-an-object",
         config=(("EmodelAPIConfig", "settings_override", "[1, 2]"),),
         expected=("EmodelAPIConfig.settings_override: expected an object of pipeline "
                   "settings",)),
    Case("override-not-json",
         config=(("EmodelAPIConfig", "settings_override", "{max_ngen: 2"),),
         expected=("EmodelAPIConfig.settings_override: Expecting property name",)),
    Case("with-seeds-not-bool", config=(("EmodelAPIConfig", "with_seeds", "maybe"),),
         expected=("EmodelAPIConfig.with_seeds: cannot interpret 'maybe' as boolean",)),
    Case("recipes-path-missing",
         config=(("EmodelAPIConfig", "recipes_path", "missing/recipes.json"),),
         expected=("missing/recipes.json: recipes file not found (run root {root})",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_luigi_command_line_or_config(tmp_path: Path, case: Case) -> None:
    root = make_sandbox(tmp_path)
    sandbox = root.parent
    for section, option, value in case.config:
        configure(root, section, option, fill(value, root))
    before = tree(sandbox)
    command = [*luigi_command(root, "EModelCreation")[:-2], *case.args, "--local-scheduler",
               "--no-lock"]
    result = subprocess.run(command, cwd=sandbox, env=luigi_env(root), capture_output=True,
                            text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode not in NOTHING_FAILED, output[-3000:]
    for text in case.expected:
        assert fill(text, root) in output, output[-3000:]
    # Refused while scheduling: no task ran, not even one that then failed.
    assert ran_tasks(output) == {}
    assert "Did not run any tasks" in output or "Execution Summary" not in output
    assert tree(sandbox) == before


@dataclass(frozen=True)
class CliCase:
    """One bad ``luigi-emodel`` command line; ``{root}`` is the run root."""

    id: str
    args: tuple[str, ...]
    exit_code: int
    expected: str


CLI_CASES = [
    CliCase("status-unknown-emodel", ("status", "--emodel-dir", "{root}", "--emodel", "L5PC"),
            1, "no recipe for emodel 'L5PC' (known: hhcell)"),
    CliCase("status-emodel-dotdot", ("status", "--emodel-dir", "{root}", "--emodel", "../x"),
            1, "'../x' is not a valid NEURON template name"),
    CliCase("status-iteration-tag-slash",
            ("status", "--emodel-dir", "{root}", "--iteration-tag", "a/b"),
            1, "'a/b' is not a valid iteration tag"),
    CliCase("status-emodel-dir-missing", ("status", "--emodel-dir", "{root}/missing"),
            1, "recipes.json"),
    CliCase("status-recipes-missing",
            ("status", "--emodel-dir", "{root}", "--recipes-path", "nope.json"),
            1, "nope.json"),
    CliCase("status-unknown-option", ("status", "--emodel-dir", "{root}", "--seed", "1"),
            2, "unrecognized arguments: --seed 1"),
    CliCase("schema-no-folder", ("schema",), 2, "the following arguments are required: DIR"),
    CliCase("schema-into-final-json", ("schema", "{root}/final.json"),
            2, "final.json: exists and is not a folder"),
    CliCase("init-over-the-run-root", ("init", "{root}", "--emodel", EMODEL),
            1, "not overwriting existing"),
    CliCase("init-emodel-dotdot", ("init", "{root}/new", "--emodel", "../x"),
            2, "--emodel '../x': expected a NEURON template name"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_bad_luigi_emodel_command_line(tmp_path: Path, case: CliCase) -> None:
    root = make_sandbox(tmp_path)
    sandbox = root.parent
    before = tree(sandbox)
    args = [fill(a, root) for a in case.args]
    result = subprocess.run([LUIGI_EMODEL, *args], cwd=sandbox, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == case.exit_code, result.stderr
    assert case.expected in result.stderr
    assert "Traceback" not in result.stderr
    assert tree(sandbox) == before
