"""Bad input: one clear error naming the file and the field, and nothing stored is touched.

Every case builds a real project in a fresh folder, stores a few models through the access
point, corrupts one input, then calls the access-point method that reads it. The error must
be one of the package's exceptions, of the expected class, and its first line must start with
``<file relative to the run root>: <field path>: ``; afterwards every file under the test
folder (final.json above all) must be byte-for-byte what it was.

The same case list generates the table of docs/errors.md (``python tests/_errors_table.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import pytest

from conftest import EMODEL, make_project, stored_entry
from luigi_emodel import (
    ConfigurationError,
    EModelError,
    ExtractionError,
    LocalAccessPoint,
    MechanismError,
    MissingFileError,
    StorageError,
    UnknownEModelError,
)

#: Metadata of the access point that stores the models and, by default, reads them back.
METADATA: dict[str, Any] = {"species": "rat", "brain_region": "SSCX", "iteration_tag": "it1"}
SEEDS = (1, 2, 3)
RECIPES = "recipes.json"
PARAMS = "config/params/cell.json"
FEATURES = f"config/features/{EMODEL}.json"
PROTOCOLS = f"config/protocols/{EMODEL}.json"
SETTINGS_FILE = "config/settings.json"
TARGETS = f"config/extract_config/{EMODEL}.json"
FINAL = "final.json"
ENTRY = f"{EMODEL}__it1__2"  # a stored model that the final.json cases damage

Corruption = Callable[[Path], None]
Action = Callable[[Path], Any]


@dataclass(frozen=True)
class Case:
    """One bad input: how to make it, how to trigger it, and what the user must see.

    Attributes:
        id: pytest id.
        what: the bad input in words (first column of docs/errors.md).
        corrupt: damages the project under the run root.
        action: the call that reads the bad input and must raise.
        error: the exact exception class expected.
        source: how the message names the input (a path relative to the run root, or the
            name of an argument); the first line starts with ``<source>: ``.
        field: the field path, right after the source (None if the input has no field).
        also: other texts the first line must contain.
        layout: keyword arguments of ``make_project`` (and ``legacy_dir_structure`` of the
            access point).
    """

    id: str
    what: str
    corrupt: Corruption
    action: Action
    error: type[EModelError]
    source: str
    field: str | None = None
    also: tuple[str, ...] = ()
    layout: dict[str, Any] = dataclass_field(default_factory=dict)


# -- building blocks ---------------------------------------------------------------------------


def open_ap(root: Path, emodel: str = EMODEL, legacy_dir_structure: bool = False,
            **metadata: Any) -> LocalAccessPoint:
    """An access point on the project at ``root`` (metadata of the stored models by default)."""
    return LocalAccessPoint(emodel, emodel_dir=root, legacy_dir_structure=legacy_dir_structure,
                            **{**METADATA, **metadata})


def call(method: str, *args: Any, **metadata: Any) -> Action:
    """Action: open an access point (with ``metadata`` overrides) and call ``method``.

    A property (``morph_path``) is read instead of called.
    """
    def action(root: Path) -> Any:
        attribute = getattr(open_ap(root, **metadata), method)
        return attribute(*args) if callable(attribute) else attribute
    return action


def construct(**metadata: Any) -> Action:
    """Action: only construct the access point (it reads recipes.json and the settings).

    ``metadata`` may also hold other arguments of the access point (``legacy_dir_structure``).
    """
    return lambda root: open_ap(root, **metadata)


def nothing(root: Path) -> None:
    """Corruption for the cases whose bad input is an argument of the call."""


def edit_json(relative: str, change: Callable[[Any], Any]) -> Corruption:
    """Corruption: load a JSON file, apply ``change`` (in place, or returning a new value)."""
    def corrupt(root: Path) -> None:
        path = root / relative
        data = json.loads(path.read_text())
        result = change(data)
        path.write_text(json.dumps(data if result is None else result, indent=2))
    return corrupt


def recipe(change: Callable[[dict[str, Any]], Any]) -> Corruption:
    """Corruption of this e-model's recipe."""
    return edit_json(RECIPES, lambda recipes: change(recipes[EMODEL]) and None)


def settings(**values: Any) -> Corruption:
    """Corruption: set inline pipeline settings."""
    return recipe(lambda r: r["pipeline_settings"].update(values))


def parameter(index: int, **values: Any) -> Corruption:
    """Corruption of one parameter of the model configuration (new format)."""
    return edit_json(PARAMS, lambda d: d["parameters"][index].update(values))


def efeature(index: int, **values: Any) -> Corruption:
    """Corruption of one e-feature of the fitness-calculator configuration (new format)."""
    return edit_json(FEATURES, lambda d: d["efeatures"][index].update(values))


def final_entry(change: Callable[[dict[str, Any]], Any]) -> Corruption:
    """Corruption of one stored model in final.json."""
    return edit_json(FINAL, lambda d: change(d[ENTRY]) and None)


def write(relative: str, text: str) -> Corruption:
    """Corruption: replace a file's content (creating its folder if needed)."""
    def corrupt(root: Path) -> None:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return corrupt


def remove(relative: str) -> Corruption:
    """Corruption: delete a file."""
    return lambda root: (root / relative).unlink()


def truncate(relative: str) -> Corruption:
    """Corruption: cut a file in half (a crash of a writer that did not write atomically)."""
    def corrupt(root: Path) -> None:
        text = (root / relative).read_bytes()
        (root / relative).write_bytes(text[: len(text) // 2])
    return corrupt


def store_model_configuration_to(path: str) -> Action:
    def action(root: Path) -> Any:
        ap = open_ap(root)
        return ap.store_model_configuration(ap.get_model_configuration(), path=path)
    return action


def store_entry(**values: Any) -> Action:
    return lambda root: open_ap(root).store_emodel({**stored_entry(4), **values})


BAD_RECIPES_JSON = '{\n  "cADtest": {\n    "params": "config/params/cell.json",\n  }\n}\n'
NO_SUFFIX_MOD = "NEURON {\n    RANGE gbar\n}\nPARAMETER { gbar = 0.1 }\n"
LEGACY_FEATURES = {"params_format": "legacy", "features_format": "legacy"}

RECORDING = "recordings/cell1_IDrest_1.npz"  # the recording the fixture's targets list


def sweep(nan_at: int | None = None, trim_current: int = 0) -> Corruption:
    """Corruption: write the fixture's recording as one .npz sweep, damaged as asked."""
    def corrupt(root: Path) -> None:
        import numpy as np

        from luigi_emodel.science.readers import write_npz

        time = np.arange(0.0, 1000.0, 0.1)
        voltage = np.full(time.size, -70.0)
        if nan_at is not None:
            voltage[nan_at] = np.nan
        current = np.where((time > 100) & (time < 600), 0.2, 0.0)
        write_npz(root / RECORDING, voltage, current[:current.size - trim_current], 0.1)
    return corrupt


def extract(root: Path) -> Any:
    """Action: the extraction of the e-features from the recordings."""
    from luigi_emodel.science.extraction import extract_save_features_protocols

    return extract_save_features_protocols(open_ap(root))


# -- the cases ---------------------------------------------------------------------------------

CASES: list[Case] = [
    # recipes.json
    Case("recipes-missing", "recipes.json does not exist",
         remove(RECIPES), construct(), MissingFileError, RECIPES,
         also=("recipes file not found",)),
    Case("recipes-missing-legacy-layout", "recipes.json missing, legacy_dir_structure",
         remove(f"{EMODEL}/config/recipes/recipes.json"),
         construct(legacy_dir_structure=True), MissingFileError,
         f"{EMODEL}/config/recipes/recipes.json",
         layout={"legacy_dir_structure": True, **LEGACY_FEATURES}),
    Case("recipes-bad-json", "recipes.json is not valid JSON (trailing comma)",
         write(RECIPES, BAD_RECIPES_JSON), construct(), ConfigurationError, RECIPES,
         also=("invalid JSON at line 4, column 3",)),
    Case("recipes-not-object", "recipes.json is a list",
         write(RECIPES, "[]"), construct(), ConfigurationError, RECIPES, also=("found list",)),
    Case("emodel-unknown", "an emodel that recipes.json does not define",
         nothing, construct(emodel="cADother"), UnknownEModelError, RECIPES,
         also=("'cADother'", "known: cADtest")),
    Case("recipe-unknown-key", "a misspelt key in a recipe (`morphologie`)",
         recipe(lambda r: r.update(morphologie=[])), construct(), ConfigurationError, RECIPES,
         f"{EMODEL}.morphologie", also=("Extra inputs are not permitted",)),
    Case("recipe-no-params", "a recipe without `params` or `parameters`",
         recipe(lambda r: r.pop("params")), construct(), ConfigurationError, RECIPES, EMODEL,
         also=("'params' or 'parameters'",)),
    Case("morphology-no-asc-swc", "a morphology list with no .asc or .swc file",
         recipe(lambda r: r.update(morphology=[["cell", "cell.h5"]])), construct(),
         ConfigurationError, RECIPES, f"{EMODEL}.morphology", also=("cell.h5",)),
    Case("morphology-missing", "the morphology file does not exist",
         recipe(lambda r: r.update(morphology=[["cell", "missing.swc"]])),
         call("get_model_configuration"), MissingFileError, RECIPES, f"{EMODEL}.morphology",
         also=("morphologies/missing.swc",)),
    # pipeline settings
    Case("settings-unknown-key", "a misspelt pipeline setting (`max_gen`)",
         settings(max_gen=5), construct(), ConfigurationError, RECIPES,
         f"{EMODEL}.pipeline_settings.max_gen", also=("Extra inputs are not permitted",)),
    Case("settings-wrong-type", 'a pipeline setting of the wrong type (`"max_ngen": "ten"`)',
         settings(max_ngen="ten"), construct(), ConfigurationError, RECIPES,
         f"{EMODEL}.pipeline_settings.max_ngen", also=("valid integer",)),
    Case("settings-out-of-range", "`n_model` 0",
         settings(n_model=0), construct(), ConfigurationError, RECIPES,
         f"{EMODEL}.pipeline_settings.n_model", also=("greater than or equal to 1",)),
    Case("settings-optimiser", "`optimiser` not IBEA, SO-CMA or MO-CMA",
         settings(optimiser="CMA"), construct(), ConfigurationError, RECIPES,
         f"{EMODEL}.pipeline_settings.optimiser", also=("'IBEA', 'SO-CMA' or 'MO-CMA'",)),
    Case("settings-validation-function", "`validation_function` not max_score/mean_score",
         settings(validation_function="median"), construct(), ConfigurationError, RECIPES,
         f"{EMODEL}.pipeline_settings.validation_function", also=("'median'",)),
    Case("settings-validation-function-list", "`validation_function` a list of 1, not [path, "
         "function]", settings(validation_function=["my_validation.py"]), construct(),
         ConfigurationError, RECIPES, f"{EMODEL}.pipeline_settings.validation_function",
         also=("[path, function]",)),
    Case("settings-file-missing", "`pipeline_settings` names a file that does not exist",
         recipe(lambda r: r.update(pipeline_settings="config/no_settings.json")), construct(),
         MissingFileError, "config/no_settings.json",
         also=(f"named by recipes.json: {EMODEL}.pipeline_settings",)),
    Case("settings-file-unknown-key", "a misspelt setting in a settings file (`n_models`)",
         edit_json(SETTINGS_FILE, lambda d: d.update(n_models=3)), construct(),
         ConfigurationError, SETTINGS_FILE, "n_models", layout={"settings_in_file": True}),
    Case("settings-file-bad-json", "a settings file that is not valid JSON",
         write(SETTINGS_FILE, '{"max_ngen": 10,}'), construct(), ConfigurationError,
         SETTINGS_FILE, also=("invalid JSON at line 1, column 17",),
         layout={"settings_in_file": True}),
    # metadata (arguments of the access point, e.g. Luigi parameters)
    Case("emodel-starts-with-digit", "emodel `1abc` (not a NEURON template name)",
         nothing, construct(emodel="1abc"), ConfigurationError, "metadata", "emodel",
         also=("NEURON template name",)),
    Case("emodel-dash", "emodel `a-b`",
         nothing, construct(emodel="a-b"), ConfigurationError, "metadata", "emodel",
         also=("NEURON template name",)),
    Case("emodel-dotdot", "emodel `../cADtest`",
         nothing, construct(emodel="../cADtest"), ConfigurationError, "metadata", "emodel"),
    Case("iteration-dotdot", "iteration tag `../it1`",
         nothing, construct(iteration_tag="../it1"), ConfigurationError, "metadata",
         "iteration_tag", also=("not a valid iteration tag",)),
    Case("metadata-nul", "a NUL character in a metadata value (etype)",
         nothing, construct(etype="cAD\x00pyr"), ConfigurationError, "metadata", "etype",
         also=("NUL",)),
    Case("emodel-too-long", "an emodel name of 300 characters",
         nothing, construct(emodel="a" * 300), ConfigurationError, "metadata", "emodel",
         also=("300 characters long",)),
    Case("iteration-too-long", "an iteration tag of 300 characters",
         nothing, construct(iteration_tag="t" * 300), ConfigurationError, "metadata",
         "iteration_tag", also=("300 characters long",)),
    Case("brain-region-too-long", "a brain region of 5000 characters",
         nothing, construct(brain_region="S" * 5000), ConfigurationError, "metadata",
         "brain_region", also=("5000 characters long",)),
    # model configuration (params file)
    Case("params-missing", "the params file does not exist",
         remove(PARAMS), call("get_model_configuration"), MissingFileError, PARAMS,
         also=(f"named by recipes.json: {EMODEL}.params",)),
    Case("params-bad-json", "the params file is not valid JSON",
         truncate(PARAMS), call("get_model_configuration"), ConfigurationError, PARAMS,
         also=("invalid JSON at line",)),
    Case("params-bounds-reversed", "parameter bounds with low > high",
         parameter(4, value=[1e-4, 1e-5]), call("get_model_configuration"),
         ConfigurationError, PARAMS, "parameters[4].value", also=("low > high",)),
    Case("params-value-string", 'a parameter value that is a string (`"1e-5"`)',
         parameter(4, value="1e-5"), call("get_model_configuration"), ConfigurationError,
         PARAMS, "parameters[4].value", also=("expected [low, high] or a number",)),
    Case("params-unknown-key", "an unknown key in a parameter",
         parameter(4, unit="S/cm2"), call("get_model_configuration"), ConfigurationError,
         PARAMS, "parameters[4].unit", also=("Extra inputs are not permitted",)),
    Case("params-unknown-location", "a parameter at an unknown location (`dendritic`)",
         parameter(4, location="dendritic"), call("get_model_configuration"),
         ConfigurationError, PARAMS, "parameters[4].location", also=("'dendritic'",)),
    Case("mechanism-unknown-location", "a mechanism at an unknown location",
         edit_json(PARAMS, lambda d: d["mechanisms"][0].update(location="everywhere")),
         call("get_model_configuration"), ConfigurationError, PARAMS,
         "mechanisms[0].location", also=("'everywhere'",)),
    Case("params-unknown-distribution", "a parameter with an undefined distribution",
         parameter(7, distribution="sigmoid"), call("get_model_configuration"),
         ConfigurationError, PARAMS, "parameters[7].distribution", also=("'sigmoid'",)),
    Case("params-mechanism-not-inserted", "a parameter whose mechanism is not inserted at its "
         "location", parameter(6, location="apical"), call("get_model_configuration"),
         ConfigurationError, PARAMS, "parameters[6]", also=("'nakx'", "'apical'")),
    Case("params-no-mechanism", "a parameter that no inserted mechanism owns (`gIhbar_Ih`)",
         edit_json(PARAMS, lambda d: d["parameters"].append(
             {"name": "gIhbar_Ih", "value": [0, 1e-4], "location": "somatic"})),
         call("get_model_configuration"), ConfigurationError, PARAMS, "parameters[8].name",
         also=("'gIhbar_Ih'",)),
    Case("params-unknown-distribution-parameter", "a distribution parameter of an undefined "
         "distribution", parameter(2, location="distribution_sigmoid"),
         call("get_model_configuration"), ConfigurationError, PARAMS, "parameters[2].location",
         also=("unknown distribution 'sigmoid'",)),
    Case("params-legacy-mechanisms-shape", "legacy params: `mechanisms.somatic` is a list",
         edit_json(PARAMS, lambda d: d["mechanisms"].update(somatic=["pas"])),
         call("get_model_configuration"), ConfigurationError, PARAMS, "mechanisms.somatic",
         layout=LEGACY_FEATURES),
    # mechanisms
    Case("mod-without-suffix", "a .mod file without SUFFIX / POINT_PROCESS",
         write("mechanisms/broken.mod", NO_SUFFIX_MOD), call("get_available_mechanisms"),
         MechanismError, "mechanisms/broken.mod", "NEURON block"),
    # fitness-calculator configuration (features file)
    Case("features-missing", "the features file does not exist",
         remove(FEATURES), call("get_fitness_calculator_configuration"), MissingFileError,
         FEATURES, also=(f"named by recipes.json: {EMODEL}.features",)),
    Case("efeature-unknown-protocol", "an efeature of a protocol that is not defined",
         efeature(1, protocol_name="Step_999"), call("get_fitness_calculator_configuration"),
         ConfigurationError, FEATURES, "efeatures[1].protocol_name", also=("'Step_999'",)),
    Case("efeature-unknown-recording", "an efeature on a recording its protocol lacks",
         efeature(1, recording_name="dend.v"), call("get_fitness_calculator_configuration"),
         ConfigurationError, FEATURES, "efeatures[1].recording_name", also=("'dend.v'",)),
    Case("efeature-no-mean", "an efeature without `mean`",
         edit_json(FEATURES, lambda d: d["efeatures"][0].pop("mean") and None),
         call("get_fitness_calculator_configuration"), ConfigurationError, FEATURES,
         "efeatures[0].mean", also=("Field required",)),
    Case("legacy-features-unknown-protocol", "legacy features for a protocol missing from the "
         "protocols file", edit_json(FEATURES, lambda d: d.update(
             Step_400={"soma.v": [{"feature": "Spikecount", "val": [12.0, 2.0]}]})),
         call("get_fitness_calculator_configuration"), ConfigurationError,
         f"{FEATURES} + {PROTOCOLS}", "Step_400.soma.v[0]", also=("'Step_400'",),
         layout=LEGACY_FEATURES),
    Case("legacy-protocols-missing", "legacy features, the protocols file does not exist",
         remove(PROTOCOLS), call("get_fitness_calculator_configuration"), MissingFileError,
         PROTOCOLS, also=(f"named by recipes.json: {EMODEL}.protocol",),
         layout=LEGACY_FEATURES),
    # targets configuration
    Case("targets-file-without-filepath", "a recording file without `filepath`",
         edit_json(TARGETS, lambda d: d["files"][0].pop("filepath") and None),
         call("get_targets_configuration"), ConfigurationError, TARGETS, "files[0].filepath"),
    Case("targets-amplitude-string", "a target amplitude that is a string",
         edit_json(TARGETS, lambda d: d["targets"][0].update(amplitude="high")),
         call("get_targets_configuration"), ConfigurationError, TARGETS,
         "targets[0].amplitude", also=("valid number",)),
    Case("targets-path-unset", "`path_extract_config` unset, targets requested",
         recipe(lambda r: r["pipeline_settings"].pop("path_extract_config") and None),
         call("get_targets_configuration"), ConfigurationError, RECIPES,
         f"{EMODEL}.pipeline_settings.path_extract_config", also=("not set",)),
    Case("targets-missing", "`path_extract_config` names a file that does not exist",
         remove(TARGETS), call("get_targets_configuration"), MissingFileError, TARGETS,
         also=(f"named by recipes.json: {EMODEL}.pipeline_settings.path_extract_config",)),
    # recordings (read by the extraction)
    Case("recording-nan", "a recorded sweep with a NaN sample",
         sweep(nan_at=50), extract, ExtractionError, RECORDING, "sweep 0",
         also=("NaN or infinite",)),
    Case("recording-lengths", "a sweep whose voltage and current differ in length",
         sweep(trim_current=5), extract, ExtractionError, RECORDING, "sweep 0",
         also=("different lengths",)),
    Case("recording-unreadable", "a recording file that is not what its extension says",
         write(RECORDING, "not a zip\n"), extract, ExtractionError, RECORDING,
         also=("cannot be read",)),
    Case("recording-unit", "a recording with a voltage unit that does not parse",
         lambda root: (sweep()(root),
                       edit_json(TARGETS, lambda d: d["files"][0]["other_metadata"].update(
                           v_unit="volts?"))(root)),
         extract, ConfigurationError, TARGETS, "files[0].other_metadata.v_unit",
         also=("unknown voltage unit",)),
    # final.json
    Case("final-list", "final.json holds a list",
         write(FINAL, "[]\n"), call("get_emodels"), StorageError, FINAL, also=("found list",)),
    Case("final-entry-no-seed", "a final.json entry without `seed`",
         final_entry(lambda e: e.pop("seed") and None), call("get_emodels"), StorageError,
         FINAL, f"{ENTRY}.seed", also=("Field required",)),
    Case("final-entry-seed-string", 'a final.json entry with seed `"abc"`',
         final_entry(lambda e: e.update(seed="abc")), call("get_emodels"), StorageError,
         FINAL, f"{ENTRY}.seed", also=("'abc'",)),
    Case("final-entry-parameter-string", "a final.json parameter value that is a string",
         final_entry(lambda e: e["parameters"].update({"g_pas.all": "small"})),
         call("get_emodels"), StorageError, FINAL, f"{ENTRY}.parameters.g_pas.all"),
    Case("final-entry-not-object", "a final.json entry that is a string",
         edit_json(FINAL, lambda d: d.update({ENTRY: "lost"})),
         call("is_checked_by_validation", 2), StorageError, FINAL, ENTRY,
         also=("found str",)),
    Case("final-corrupt-read", "final.json cut in half, no final_tmp.json (read)",
         truncate(FINAL), call("has_best_model", 1), StorageError, FINAL,
         also=("corrupt (line", "no readable final_tmp.json")),
    Case("final-corrupt-store", "final.json cut in half, no final_tmp.json (store)",
         truncate(FINAL), store_entry(), StorageError, FINAL, also=("corrupt (line",)),
    # values given to the storing calls
    Case("store-seed-string", 'storing a model with seed `"abc"`',
         nothing, store_entry(seed="abc"), ConfigurationError, FINAL, "seed",
         also=("'abc'",)),
    Case("store-outside-run-root", "store_model_configuration to `../outside.json`",
         nothing, store_model_configuration_to("../outside.json"), ConfigurationError,
         "model configuration path", also=("'../outside.json' leaves the run root",)),
]


# -- running a case ----------------------------------------------------------------------------


def prepare(case: Case, base: Path) -> Path:
    """Build the project in ``base/project``, store models, apply the corruption; the root."""
    root = base / "project"
    make_project(root, **case.layout)
    store = open_ap(root, legacy_dir_structure=case.layout.get("legacy_dir_structure", False))
    for seed in SEEDS:
        store.store_emodel(stored_entry(seed, score=float(seed)))
    case.corrupt(root)
    return root


def trigger(case: Case, root: Path) -> EModelError:
    """Run the case's action; return the error it raised (fails if it raised none)."""
    with pytest.raises(EModelError) as info:
        case.action(root)
    return info.value


def first_line(error: BaseException) -> str:
    return str(error).split("\n", 1)[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(tmp_path: Path, case: Case) -> None:
    root = prepare(case, tmp_path)
    final_before = (root / FINAL).read_bytes()
    files_before = snapshot(tmp_path)

    error = trigger(case, root)

    assert type(error) is case.error, f"{type(error).__name__}: {error}"
    line = first_line(error)
    head = f"{case.source}: " + (f"{case.field}: " if case.field else "")
    assert line.startswith(head), line
    for text in case.also:
        assert text in line, line
    # The message names files relative to the run root, never through a path outside it.
    assert not line.startswith(str(tmp_path)), line
    assert (root / FINAL).read_bytes() == final_before
    assert snapshot(tmp_path) == files_before  # nothing written, inside or outside the root


def test_case_ids_are_unique_and_enough() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 30


def test_all_problems_of_a_file_reported_at_once(tmp_path: Path) -> None:
    make_project(tmp_path)
    path = tmp_path / PARAMS
    data = json.loads(path.read_text())
    data["parameters"][4]["value"] = [1.0, 0.0]
    data["parameters"][5]["location"] = "dendritic"
    data["parameters"][7]["distribution"] = "sigmoid"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigurationError) as info:
        open_ap(tmp_path).get_model_configuration()
    lines = str(info.value).split("\n")
    # The per-field error (a bad value) comes from the field's own check; the cross-field
    # checks run only once every field is valid. So first the value...
    assert lines == [f"{PARAMS}: parameters[4].value: bounds [low, high] with low > high: "
                     f"[1.0, 0.0]"]
    data["parameters"][4]["value"] = [0.0, 1.0]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigurationError) as info:
        open_ap(tmp_path).get_model_configuration()
    # ... then every cross-field problem, one line each, each naming file and field.
    lines = str(info.value).split("\n")
    assert [line.split(": ")[1] for line in lines] == [
        "parameters[5].location", "parameters[7].distribution"]
    assert all(line.startswith(f"{PARAMS}: ") for line in lines)


def test_corrupt_final_is_never_rewritten_nor_copied(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "final-corrupt-store")
    root = prepare(case, tmp_path)
    before = snapshot(root)
    for _ in range(2):  # a retry (as a Luigi worker would) is refused the same way
        with pytest.raises(StorageError):
            open_ap(root).store_emodel(stored_entry(4))
    # No recovery copy was invented and no "corrupt" copy kept: there was nothing to recover.
    assert snapshot(root) == before
    assert not list(root.glob("final*corrupt*")) and not (root / "final_tmp.json").exists()


def test_bad_input_errors_are_caught_as_value_or_file_errors(tmp_path: Path) -> None:
    # Callers written for the reference catch ValueError / FileNotFoundError / KeyError.
    make_project(tmp_path)
    with pytest.raises(FileNotFoundError):
        open_ap(tmp_path / "nowhere")
    with pytest.raises(KeyError):
        open_ap(tmp_path, emodel="cADother")
    with pytest.raises(ValueError):
        open_ap(tmp_path, emodel="1abc")


def test_errors_doc_is_up_to_date() -> None:
    from _errors_table import DOC, render

    assert DOC.read_text() == render(), (
        "docs/errors.md is out of date: run `python tests/_errors_table.py`")
