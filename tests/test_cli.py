"""The ``luigi-emodel`` console script, run as the installed executable in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from luigi_emodel.schemas import FILE_KINDS
from luigi_emodel.schemas.pipeline_settings import OPTIMISERS

#: The console script installed beside the interpreter running the tests (.venv/bin).
EXECUTABLE = Path(sys.executable).parent / "luigi-emodel"

pytestmark = pytest.mark.skipif(not EXECUTABLE.is_file(),
                                reason=f"console script not installed at {EXECUTABLE}")


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script; never raises on a non-zero exit (the tests check it)."""
    return subprocess.run([str(EXECUTABLE), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120, check=False)


def assert_clean_failure(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit code 2, a one-message error naming ``expected``, no traceback, nothing on stdout."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("luigi-emodel: error: ")
    for text in expected:
        assert text in result.stderr
    assert result.stdout == ""


def test_schema_writes_one_schema_per_file_kind(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "schemas"  # created with its parents
    result = run_cli("schema", out)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{kind}.schema.json" for kind in FILE_KINDS)
    assert result.stdout.split() == [str(out / f"{kind}.schema.json") for kind in FILE_KINDS]
    for kind in FILE_KINDS:
        schema = json.loads((out / f"{kind}.schema.json").read_text())
        assert schema["$schema"].startswith("https://json-schema.org/")
        assert schema["type"] == "object"
        assert isinstance(schema["properties"], dict) and schema["properties"], kind


def test_schema_content_matches_the_models(tmp_path: Path) -> None:
    assert run_cli("schema", "out", "--quiet", cwd=tmp_path).returncode == 0
    out = tmp_path / "out"

    def load(kind: str) -> dict:
        return json.loads((out / f"{kind}.schema.json").read_text())

    recipe = load("recipe")
    # Unknown keys are errors: the schema says so, for editors and validators alike.
    assert recipe["additionalProperties"] is False
    assert {"morphology", "params", "parameters", "features", "pipeline_settings",
            "__comment"} <= set(recipe["properties"])
    assert "morphology" in recipe["required"]
    settings = load("pipeline_settings")
    assert settings["additionalProperties"] is False
    assert settings["properties"]["max_ngen"]["default"] == 100
    assert settings["properties"]["optimiser"]["enum"] == list(OPTIMISERS)
    # final.json entries keep keys written by other tools: the schema must allow them.
    assert load("stored_model")["additionalProperties"] is True
    assert "seed" in load("stored_model")["required"]
    assert load("metadata")["required"] == ["emodel"]
    model = load("model_configuration")
    assert {"mechanisms", "distributions", "parameters"} <= set(model["properties"])
    assert {"efeatures", "protocols"} <= set(load("fitness_calculator_configuration")["properties"])
    assert {"files", "targets"} <= set(load("targets_configuration")["properties"])


def test_schema_rewrites_existing_files(tmp_path: Path) -> None:
    (tmp_path / "recipe.schema.json").write_text("stale")
    assert run_cli("schema", tmp_path, "-q").returncode == 0
    assert json.loads((tmp_path / "recipe.schema.json").read_text())["title"] == "Recipe"


def test_schema_into_a_file_fails_cleanly(tmp_path: Path) -> None:
    target = tmp_path / "a_file"
    target.write_text("keep me")
    assert_clean_failure(run_cli("schema", target), str(target), "not a folder")
    assert target.read_text() == "keep me"
    below = target / "sub"
    assert_clean_failure(run_cli("schema", below), str(below), "cannot create")


def test_schema_output_not_writable_fails_cleanly(tmp_path: Path) -> None:
    # An output file name taken by a folder cannot be written, whoever runs the test.
    (tmp_path / "recipe.schema.json").mkdir()
    assert_clean_failure(run_cli("schema", tmp_path), "recipe.schema.json", "cannot write")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permission bits do not bind root")
def test_schema_read_only_folder_fails_cleanly(tmp_path: Path) -> None:
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert_clean_failure(run_cli("schema", folder), str(folder), "cannot write")
    finally:
        folder.chmod(0o700)


def test_command_line_errors_exit_2() -> None:
    assert_clean_failure(run_cli(), "required")
    assert_clean_failure(run_cli("nope"), "invalid choice")
    assert_clean_failure(run_cli("schema"), "DIR")


def test_help_and_version_exit_0() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert all(command in result.stdout for command in ("schema", "status", "init"))
    for command in ("status", "init"):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and result.stdout.startswith("usage: luigi-emodel ")
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("luigi-emodel ")


def test_main_returns_the_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from luigi_emodel.cli import main

    assert main(["schema", str(tmp_path), "--quiet"]) == 0
    assert len(list(tmp_path.glob("*.schema.json"))) == len(FILE_KINDS)
    (tmp_path / "file").write_text("")
    assert main(["schema", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err


INIT_FILES = ["README.txt", "config/extract_config/{e}.json", "config/params/{e}.json",
              "morphologies/example.swc", "recipes.json"]


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: file contents, None for folders."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def test_init_writes_a_project_that_loads(tmp_path: Path) -> None:
    from luigi_emodel import LocalAccessPoint
    from luigi_emodel.science.cell_model import build_cell_model

    project = tmp_path / "new" / "project"  # created with its parents
    result = run_cli("init", project, "--emodel", "L5PC")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    written = sorted(str(Path(line).relative_to(project))
                     for line in result.stdout.splitlines()[:-1])
    assert written == sorted(name.format(e="L5PC") for name in INIT_FILES)
    assert "README.txt" in result.stdout.splitlines()[-1]
    for folder in ("mechanisms", "morphologies", "recordings"):
        assert (project / folder).is_dir()
    readme = (project / "README.txt").read_text()
    assert "EModelCreation --emodel L5PC" in readme and "config/params/L5PC.json" in readme

    ap = LocalAccessPoint("L5PC", emodel_dir=project)
    configuration = ap.get_model_configuration()
    assert configuration.free_parameter_names == ["g_pas.all"]
    assert [m.name for m in configuration.mechanisms] == ["pas"]
    targets = ap.get_targets_configuration()
    assert targets.files == [] and targets.targets and targets.protocols_rheobase == ["IDrest"]
    settings = ap.pipeline_settings
    assert settings.path_extract_config == "config/extract_config/L5PC.json"
    assert settings.n_model >= 1 and settings.max_ngen < 100
    assert not ap.has_fitness_calculator_configuration()  # the extraction writes it
    assert ap.get_available_mechanisms() == []
    # The example morphology is one NEURON reads: a soma and one dendrite (+ the axon stub).
    import bluepyopt.ephys as ephys

    cell = build_cell_model(configuration, "L5PC", str(ap.morph_path))
    cell.freeze({"g_pas.all": 1e-4})
    simulator = ephys.simulators.NrnSimulator()
    cell.instantiate(sim=simulator)
    try:
        assert [len(list(getattr(cell.icell, name))) for name in ("somatic", "basal")] == [1, 1]
    finally:
        cell.destroy(sim=simulator)

    # The new project has a status already.
    status = run_cli("status", "--emodel-dir", project)
    assert status.returncode == 0, status.stderr
    assert status.stdout.rstrip().endswith("0 validated of 0 checked (1 needed)")


def test_init_default_name_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "mechanisms").mkdir()  # existing folders are fine
    (tmp_path / "mechanisms" / "kx.mod").write_text("keep me")
    assert run_cli("init", ".", "-q", cwd=tmp_path).returncode == 0
    assert (tmp_path / "mechanisms" / "kx.mod").read_text() == "keep me"
    recipes = json.loads((tmp_path / "recipes.json").read_text())
    assert list(recipes) == ["my_emodel"]
    assert recipes["my_emodel"]["morphology"] == [["example", "example.swc"]]


def test_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "recipes.json").write_text("mine")
    (tmp_path / "config" / "params").mkdir(parents=True)
    (tmp_path / "config" / "params" / "cell.json").write_text("mine too")
    (tmp_path / "recordings").write_text("a file where a folder goes")
    before = tree(tmp_path)
    result = run_cli("init", tmp_path, "--emodel", "cell")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    for name in ("recipes.json", "config/params/cell.json", "recordings"):
        assert str(tmp_path / name) in result.stderr
    assert "morphologies" not in result.stderr
    assert tree(tmp_path) == before  # nothing written at all


def test_init_bad_command_lines_exit_2(tmp_path: Path) -> None:
    target = tmp_path / "a_file"
    target.write_text("keep me")
    assert_clean_failure(run_cli("init", target), str(target), "not a folder")
    for name in ("2cells", "my-cell", "a/b", ""):
        assert_clean_failure(run_cli("init", tmp_path / "p", "--emodel", name),
                             "NEURON template name")
    assert not (tmp_path / "p").exists()
    assert_clean_failure(run_cli("init"), "DIR")


def test_output_reader_gone_exits_quietly(tmp_path: Path) -> None:
    assert run_cli("init", tmp_path, "-q").returncode == 0
    # The read end is closed before the script writes: its first print meets a broken pipe.
    with subprocess.Popen([str(EXECUTABLE), "status", "--emodel-dir", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()
        stderr = child.stderr.read()
        assert child.wait(timeout=60) == 141
    assert stderr == ""


def test_luigid_refuses_a_non_positive_save_period() -> None:
    """``luigi-emodel luigid`` (state-saving luigid; its restart is tested in test_faults)."""
    result = subprocess.run([str(Path(sys.executable).with_name("luigi-emodel")), "luigid",
                             "--save-every", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--save-every: expected a positive number of seconds, got 0.0" in result.stderr
    assert "Traceback" not in result.stderr
