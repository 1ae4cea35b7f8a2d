"""Pipeline settings: the science settings of one e-model (recipe key ``pipeline_settings``).

Names and defaults are those of the reference (BluePyEModel 1.0.50) so that existing
recipes load unchanged; unknown keys are errors rather than silently ignored.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from luigi_emodel.schemas._base import StrictModel

__all__ = ["OPTIMISERS", "PipelineSettings"]

logger = logging.getLogger(__name__)

OPTIMISERS = ("IBEA", "SO-CMA", "MO-CMA")
#: Settings that the reference does not have.
OWN_SETTINGS = ("max_score",)
_DEFAULT_EFEL_SETTINGS = {"interp_step": 0.025, "strict_stiminterval": True}


def _default_phase_plot_settings() -> dict[str, Any]:
    return {"prot_names": ["idrest"], "amplitude": 150, "amp_window": 1.5, "relative_amp": True}


class PipelineSettings(StrictModel):
    """Every setting of the pipeline, with the reference's defaults.

    Example:
        >>> s = PipelineSettings(optimiser="SO-CMA")
        >>> s.optimisation_params
        {'offspring_size': 20}
        >>> PipelineSettings().validation_threshold
        5.0
    """

    # Extraction
    extraction_reader: list[str] | str | None = None
    extraction_threshold_value_save: int = Field(1, ge=1)
    plot_extraction: bool = True
    pickle_cells_extraction: bool = False
    extract_absolute_amplitudes: bool = False
    rheobase_strategy_extraction: str = "absolute"
    rheobase_settings_extraction: dict[str, Any] | None = None
    interpolate_RMP_extraction: bool = False
    default_std_value: float = Field(1e-3, gt=0)
    bound_max_std: bool = False
    efel_settings: dict[str, Any] = Field(default_factory=lambda: dict(_DEFAULT_EFEL_SETTINGS))
    minimum_protocol_delay: float = 0.0
    path_extract_config: str | None = None
    files_for_extraction: Any = None
    targets: Any = None
    protocols_rheobase: list[str] | None = None
    auto_targets: Any = None
    auto_targets_presets: list[str] | None = None
    # Model and evaluation
    stochasticity: bool | list[str] = False
    morph_modifiers: list[Any] | None = None
    threshold_based_evaluator: bool | None = None  # deprecated in the reference; ignored
    neuron_dt: float | None = Field(None, gt=0)
    cvode_minstep: float = Field(0.0, ge=0)
    current_precision: float = Field(0.01, gt=0)
    max_threshold_voltage: float = -30
    strict_holding_bounds: bool = True
    max_depth_holding_search: int = Field(7, ge=1)
    max_depth_threshold_search: int = Field(10, ge=1)
    spikecount_timeout: float = Field(50, gt=0)
    max_score: float = Field(250.0, gt=0)
    # Optimisation
    start_from_emodel: dict[str, Any] | None = None
    optimiser: Literal["IBEA", "SO-CMA", "MO-CMA"] = "IBEA"
    optimizer: Literal["IBEA", "SO-CMA", "MO-CMA"] | None = None  # old spelling of optimiser
    optimisation_params: dict[str, Any] | None = None
    optimisation_timeout: float = Field(600.0, gt=0)
    threshold_efeature_std: float | None = Field(None, gt=0)
    max_ngen: int = Field(100, ge=1)
    optimisation_checkpoint_period: float | None = None
    use_stagnation_criterion: bool = True
    use_params_for_seed: bool = True
    compile_mechanisms: bool = False
    # Threshold-based protocols
    name_Rin_protocol: str | list[Any] | None = None
    name_rmp_protocol: str | list[Any] | None = None
    # Validation
    validation_function: str | list[str] = "max_score"
    validation_threshold: float = 5.0
    validation_protocols: list[str] = Field(default_factory=list)
    use_ProbAMPANMDA_EMS: bool = False
    # Luigi pipeline
    n_model: int = Field(3, ge=1)
    optimisation_batch_size: int = Field(5, ge=1)
    max_n_batch: int = Field(3, ge=1)
    name_gene_map: str | None = None
    # Plots
    plot_optimisation: bool = True
    plot_optimisation_progress: bool = True
    plot_parameter_evolution: bool = True
    plot_distributions: bool = True
    plot_scores: bool = True
    plot_traces: bool = True
    plot_thumbnail: bool = True
    plot_currentscape: bool = True
    plot_dendritic_ISI_CV: bool = True
    plot_dendritic_rheobase: bool = True
    plot_bAP_EPSP: bool = False
    plot_IV_curves: bool = False
    plot_FI_curve_comparison: bool = False
    plot_traces_comparison: bool = False
    run_plot_custom_sinspec: bool = False
    IV_curve_prot_name: str = "iv"
    FI_curve_prot_name: str = "idrest"
    plot_phase_plot: bool = False
    phase_plot_settings: dict[str, Any] = Field(default_factory=_default_phase_plot_settings)
    sinespec_settings: dict[str, Any] = Field(
        default_factory=lambda: {"amp": 0.05, "threshold_based": False}
    )
    currentscape_config: dict[str, Any] | None = None
    custom_bluepyefe_cells_pklpath: str | None = None
    custom_bluepyefe_protocols_pklpath: str | None = None
    save_recordings: bool = False

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("optimizer") is not None:
            data["optimiser"] = data["optimizer"]
        # The reference writes None for these when unset; None means "use the default".
        for key, factory in (
            ("efel_settings", lambda: dict(_DEFAULT_EFEL_SETTINGS)),
            ("phase_plot_settings", _default_phase_plot_settings),
            ("sinespec_settings", lambda: {"amp": 0.05, "threshold_based": False}),
            ("validation_protocols", list),
        ):
            if key in data and data[key] is None:
                data[key] = factory()
        protocols = data.get("validation_protocols")
        if isinstance(protocols, dict):  # {"IDrest": [150, 250]} -> ["IDrest_150", "IDrest_250"]
            data["validation_protocols"] = [
                f"{name}_{amp}" for name, amps in protocols.items() for amp in amps
            ]
        return data

    @field_validator("validation_function")
    @classmethod
    def _validation_function(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            if value not in ("max_score", "mean_score"):
                raise ValueError(
                    f"expected 'max_score', 'mean_score' or [path, function], got {value!r}"
                )
        elif len(value) != 2:
            raise ValueError("expected 'max_score', 'mean_score' or [path, function]")
        return value

    @model_validator(mode="after")
    def _derived(self) -> PipelineSettings:
        if self.optimisation_params is None:
            size = 100 if self.optimiser == "IBEA" else 20
            object.__setattr__(self, "optimisation_params", {"offspring_size": size})
        if self.extract_absolute_amplitudes and (
            self.name_Rin_protocol is not None or self.name_rmp_protocol is not None
        ):
            # As the reference: absolute amplitudes and threshold-based protocols exclude
            # each other.
            logger.warning(
                "extract_absolute_amplitudes is set: name_rmp_protocol and name_Rin_protocol "
                "are ignored"
            )
            object.__setattr__(self, "name_Rin_protocol", None)
            object.__setattr__(self, "name_rmp_protocol", None)
        return self

    @property
    def offspring_size(self) -> int:
        """Population size per generation."""
        assert self.optimisation_params is not None  # set by _derived
        return int(self.optimisation_params.get("offspring_size", 100))

    def as_dict(self) -> dict[str, Any]:
        """The settings as written into a recipe (the reference's spelling)."""
        data = self.model_dump()
        data.pop("optimizer")
        data.pop("threshold_based_evaluator")
        # Settings of ours that the reference does not know: written only when set, so
        # that the reference can still load a recipe we wrote with default values.
        for key in OWN_SETTINGS:
            if data[key] == type(self).model_fields[key].default:
                data.pop(key)
        return data


#: What each setting does (shown in the JSON Schema and docs/configuration.md).
DESCRIPTIONS: dict[str, str] = {
    "extraction_reader": "[path.py, function] of a recording reader of your own; "
                         "default: by file extension (.ibw, .abf, .nwb, .txt, .npz).",
    "extraction_threshold_value_save": "Fewest recordings a feature needs to be kept.",
    "plot_extraction": "Draw the extracted features per protocol.",
    "extract_absolute_amplitudes": "Target amplitudes in nA instead of % of rheobase.",
    "rheobase_strategy_extraction": "How BluePyEfe finds each cell's rheobase.",
    "default_std_value": "Std used where the extracted std is 0.",
    "efel_settings": "eFEL settings of every feature (a feature's own settings win).",
    "path_extract_config": "The targets configuration (input of the extraction).",
    "protocols_rheobase": "Protocols used to find the rheobase.",
    "morph_modifiers": "null: replace the axon by BluePyOpt's stub; []: keep the axon.",
    "neuron_dt": "Fixed time step (ms); null: CVODE.",
    "max_threshold_voltage": "Highest voltage (mV) the threshold search may drive the cell to.",
    "current_precision": "Precision (nA) of the threshold-current search.",
    "max_depth_holding_search": "Bisection steps of the holding-current search.",
    "max_depth_threshold_search": "Bisection steps of the threshold-current search.",
    "spikecount_timeout": "Wall-clock limit (s) of one threshold-search simulation.",
    "max_score": "Score of a feature that is missing; cap of every score.",
    "optimiser": "IBEA, SO-CMA or MO-CMA.",
    "optimisation_params": "Optimiser parameters, e.g. {\"offspring_size\": 100}.",
    "optimisation_timeout": "Wall-clock limit (s) of one evaluation (of each protocol, "
                            "when the optimisation maps protocols separately: plain "
                            "protocols); past it the individual scores max_score.",
    "threshold_efeature_std": "Floor of every feature's std, as a fraction of its mean.",
    "max_ngen": "Generations of each optimisation.",
    "use_stagnation_criterion": "Let CMA stop early when it stagnates.",
    "name_Rin_protocol": "Protocol (e.g. \"IV_-20\") whose features give the input "
                         "resistance target: threshold-based protocols.",
    "name_rmp_protocol": "Protocol (e.g. \"IV_0\") whose features give the resting "
                         "potential target: threshold-based protocols.",
    "validation_function": "max_score, mean_score or [path.py, function].",
    "validation_threshold": "A model passes if its validation function's score is below.",
    "validation_protocols": "Protocols used for validation only, not optimisation.",
    "n_model": "Validated models EModelCreation aims for.",
    "optimisation_batch_size": "Seeds optimised per batch.",
    "max_n_batch": "Batches EModelCreation may spend.",
    "plot_optimisation": "Draw the convergence of each optimisation.",
    "plot_traces": "Draw the traces of each model beside the feature targets.",
    "plot_scores": "Draw the scores of each model.",
    "plot_distributions": "Draw the parameters of the validated models against the bounds.",
}

for _name, _text in DESCRIPTIONS.items():
    PipelineSettings.model_fields[_name].description = _text
PipelineSettings.model_rebuild(force=True)
