"""Figures of an e-model: optimisation convergence, traces against targets, scores, parameters.

Each function draws one figure and writes it twice, as PDF and PNG, at the paths the access
point gives (``figure_path(kind, seed, extension)``, under ``figures/<emodel>/<kind>/``), and
returns the files written. A figure whose pipeline setting is off (``plot_optimisation``,
``plot_traces``, ``plot_scores``, ``plot_distributions``) is not drawn: the function writes
nothing and returns ``[]``.

========================  ===========================  ==============================
function                  kind (folder, name suffix)   reads
========================  ===========================  ==============================
plot_optimisation         ``optimisation``             the seed's checkpoint logbook
plot_traces               ``traces``                   final.json + one simulation
plot_scores               ``scores``                   final.json
plot_parameter_...        ``parameters_distribution``  final.json + parameter bounds
========================  ===========================  ==============================

Only the traces figure simulates, and only once: the stored model is evaluated with every
protocol (validation ones included), reusing the threshold currents found at validation.

Files are replaced atomically (written under a temporary name in the same folder, then
renamed), so a reader, or a Luigi target, never sees half a figure; the PDF is written before
the PNG, and the PNG is what the plot tasks check. Matplotlib is imported only when a figure
is drawn, through its Agg canvas, without touching pyplot's global state; without matplotlib
(``pip install luigi_emodel[plot]``) drawing raises :class:`ConfigurationError`.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
from pathlib import Path
from typing import Any

from luigi_emodel.access_point._files import atomic_write_bytes
from luigi_emodel.exceptions import ConfigurationError, OptimisationError, StorageError
from luigi_emodel.schemas.fitness_configuration import PRE_PROTOCOLS

__all__ = [
    "FIGURE_KINDS",
    "figure_enabled",
    "plot_optimisation",
    "plot_parameter_distributions",
    "plot_scores",
    "plot_traces",
]

logger = logging.getLogger(__name__)

#: Figure kind -> the pipeline setting that turns it on.
FIGURE_KINDS = {
    "optimisation": "plot_optimisation",
    "traces": "plot_traces",
    "scores": "plot_scores",
    "parameters_distribution": "plot_distributions",
}
#: Written in this order: the PNG (the plot tasks' target) comes last.
EXTENSIONS = ("pdf", "png")
PNG_DPI = 110
#: Deviations (in target std) beyond which a feature's marker sits at the edge of its panel.
MAX_DEVIATION = 6.0

_OK, _BAD, _TARGET, _MISSING = "#1b7837", "#c51b7d", "#404040", "#969696"
_OPTIMISATION, _VALIDATION = "#4477aa", "#ee7733"


def figure_enabled(access_point: Any, kind: str) -> bool:
    """True if the pipeline settings ask for figures of ``kind`` (see :data:`FIGURE_KINDS`)."""
    try:
        setting = FIGURE_KINDS[kind]
    except KeyError:
        raise ConfigurationError(
            f"figure kind: expected one of {sorted(FIGURE_KINDS)}, got {kind!r}"
        ) from None
    return bool(getattr(access_point.pipeline_settings, setting))


# -- drawing and writing ---------------------------------------------------------------------


def _require_matplotlib() -> None:
    """Fail before any work (a simulation, say) when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "figures need matplotlib: install it, e.g. pip install 'luigi_emodel[plot]'"
        ) from None


def _new_figure(width: float, height: float) -> Any:
    """A figure on an Agg canvas (no pyplot: nothing global changes, no GUI is ever tried)."""
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, access_point: Any, kind: str, seed: int | None) -> list[Path]:
    """Write ``figure`` as PDF then PNG at the access point's paths; each file atomically."""
    written = []
    for extension in EXTENSIONS:
        path = access_point.figure_path(kind, seed, extension)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        # No creation date in the PDF: the same model gives the same bytes.
        metadata = {"CreationDate": None} if extension == "pdf" else None
        figure.savefig(buffer, format=extension, dpi=PNG_DPI, metadata=metadata)
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
    logger.info("figure %s written", written[-1])
    return written


def _seed_title(access_point: Any, seed: int | None, what: str) -> str:
    metadata = access_point.emodel_metadata
    name = metadata.emodel + (f" ({metadata.iteration})" if metadata.iteration else "")
    return f"{name}, seed {seed}: {what}" if seed is not None else f"{name}: {what}"


def _verdict(validated: bool | None) -> str:
    return {True: "passed", False: "failed", None: "not checked"}[validated]


def _stored_model(access_point: Any, seed: int) -> Any:
    models = access_point.select_models(only_validated=False, only_best=False, seeds=[seed])
    if not models:
        raise StorageError(
            f"{access_point.final_store.name}: no stored model "
            f"{access_point.get_model_name_for_final(seed)!r} (emodel "
            f"{access_point.emodel_metadata.emodel!r}, seed {seed}): store it first"
        )
    return models[0]


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


# -- 1. optimisation convergence -------------------------------------------------------------


def _logbook_columns(checkpoint: dict[str, Any], path: Path) -> dict[str, list[float]]:
    """gen, nevals, min, avg, max of every recorded generation (the last record of a
    generation wins if a resumed run recorded it twice)."""
    logbook = checkpoint.get("logbook")
    records: dict[int, dict[str, float]] = {}
    for index, entry in enumerate(logbook or []):
        try:
            records[int(entry["gen"])] = {
                key: float(entry.get(key, math.nan)) for key in ("nevals", "min", "avg", "max")
            }
        except (KeyError, TypeError, ValueError) as error:
            raise StorageError(
                f"{path}: logbook[{index}]: expected gen, nevals, min, avg, std, max: {error!r}"
            ) from None
    if not records:
        raise StorageError(f"{path}: logbook: no generation recorded")
    generations = sorted(records)
    columns: dict[str, list[float]] = {"gen": [float(g) for g in generations]}
    for key in ("nevals", "min", "avg", "max"):
        columns[key] = [records[g][key] for g in generations]
    return columns


def plot_optimisation(access_point: Any, seed: int) -> list[Path]:
    """Best and mean score of the population at every generation of ``seed``'s optimisation.

    Reads the checkpoint's logbook (BluePyOpt records, per generation, the number of
    evaluations and the min / mean / std / max of the summed scores of the population). The
    population's range is shaded; the score axis is logarithmic when every score is positive.

    Returns:
        The files written (PDF, PNG), or ``[]`` when ``plot_optimisation`` is off.

    Raises:
        OptimisationError: the seed has no checkpoint.
        StorageError: the checkpoint cannot be read or has no logbook.
    """
    if not figure_enabled(access_point, "optimisation"):
        return []
    _require_matplotlib()
    from luigi_emodel.science.optimisation import read_checkpoint

    path = access_point.checkpoint_path(seed)
    if not path.is_file():
        raise OptimisationError(f"{path}: no checkpoint for seed {seed}: optimise first")
    columns = _logbook_columns(read_checkpoint(path), path)
    progress = access_point.read_optimisation_progress(seed) or {}
    settings = access_point.pipeline_settings

    figure = _new_figure(7.0, 4.2)
    axes = figure.add_subplot()
    generations = columns["gen"]
    lowest, highest = columns["min"], columns["max"]
    if all(math.isfinite(v) for v in lowest + highest):
        axes.fill_between(generations, lowest, highest, color=_OPTIMISATION, alpha=0.12,
                          linewidth=0, label="population range")
    axes.plot(generations, columns["avg"], color=_OPTIMISATION, linestyle="--", marker=".",
              label="mean score")
    axes.plot(generations, lowest, color=_OK, marker="o", markersize=4, alpha=0.5,
              label="best of the generation")
    # CMA populations are not elitist: a generation's best may be worse than an earlier one.
    finite = [v if math.isfinite(v) else math.inf for v in lowest]
    best_so_far = list(itertools.accumulate(finite, min))
    axes.step(generations, best_so_far, where="post", color=_OK, linewidth=2,
              label="best so far")
    if min((v for v in lowest + columns["avg"] if math.isfinite(v)), default=0.0) > 0:
        axes.set_yscale("log")
    axes.set_xlabel("generation")
    axes.set_ylabel("score (sum over objectives)")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="upper right", fontsize="small")
    if len(generations) <= 12:
        axes.set_xticks(generations)
    evaluations = sum(v for v in columns["nevals"] if math.isfinite(v))
    state = "completed" if progress.get("completed") else "not completed"
    axes.set_title(
        f"{settings.optimiser}, {len(generations)} generations recorded, {evaluations:g} "
        f"evaluations, {state}; best {best_so_far[-1]:.4g}", fontsize="small",
    )
    figure.suptitle(_seed_title(access_point, seed, "optimisation"))
    return _save(figure, access_point, "optimisation", seed)


# -- 2. traces and e-features ------------------------------------------------------------------


class _Row:
    """One protocol of the traces figure: its recordings, its features, its stimulus."""

    def __init__(self, name: str, recordings: list[str], features: list[Any],
                 stimulus: dict[str, Any] | None = None, validation: bool = False,
                 threshold_based: bool = False) -> None:
        self.name = name
        self.recordings = recordings
        self.features = features
        self.stimulus = stimulus
        self.validation = validation
        self.threshold_based = threshold_based

    def title(self, threshold_data: dict[str, Any]) -> str:
        text = self.name + (" (validation)" if self.validation else "")
        stimulus = self.stimulus or {}
        if self.threshold_based and "thresh_perc" in stimulus:
            threshold = _finite((threshold_data or {}).get("bpo_threshold_current"))
            text += f": {float(stimulus['thresh_perc']):g}% of threshold"
            if threshold is not None:
                text += f" ({threshold * float(stimulus['thresh_perc']) / 100:.3g} nA)"
        elif "amp" in stimulus:
            text += f": {float(stimulus['amp']):.3g} nA"
        return text


def _rows(evaluator: Any, traces: dict[str, Any]) -> list[_Row]:
    rows = []
    # Pre-protocols run first; they get a row when they have features or traces.
    for name in PRE_PROTOCOLS:
        features = [f for f in evaluator.efeatures if f.protocol_name == name]
        recordings = sorted(k for k in traces if k.startswith(f"{name}."))
        if features or recordings:
            rows.append(_Row(name, recordings, features))
    for protocol in evaluator.protocols:
        rows.append(_Row(
            protocol.name,
            [r.name for r in protocol.recordings_from_config],
            [f for f in evaluator.efeatures if f.protocol_name == protocol.name],
            stimulus=protocol.stimuli[0] if protocol.stimuli else None,
            validation=protocol.validation,
            threshold_based=protocol.protocol_type == "ThresholdBasedProtocol",
        ))
    return rows


def _draw_traces(axes: Any, row: _Row, traces: dict[str, Any],
                 threshold_data: dict[str, Any], failed: str | None) -> None:
    stimulus = row.stimulus or {}
    if "delay" in stimulus and "duration" in stimulus:
        start = float(stimulus["delay"])
        axes.axvspan(start, start + float(stimulus["duration"]), color="#fde0c5", alpha=0.5,
                     linewidth=0, label="stimulus")
    if "totduration" in stimulus:
        axes.set_xlim(0, float(stimulus["totduration"]))
    drawn = 0
    for index, name in enumerate(row.recordings):
        trace = traces.get(name)
        if trace is None:
            continue
        label = name[len(row.name) + 1:] if name.startswith(f"{row.name}.") else name
        axes.plot(trace["time"], trace["voltage"], linewidth=0.8, color=f"C{index}",
                  label=label)
        drawn += 1
    if not drawn:
        reason = f"evaluation failed: {failed}" if failed else "no trace recorded"
        axes.text(0.5, 0.5, reason, transform=axes.transAxes, ha="center", va="center",
                  color=_BAD, fontsize="small", wrap=True)
    axes.set_ylabel("V (mV)")
    axes.set_title(row.title(threshold_data), fontsize="small", loc="left")
    axes.grid(True, alpha=0.3)
    if drawn > 1:
        axes.legend(fontsize="x-small", loc="upper right")


def _draw_features(axes: Any, row: _Row, values: dict[str, float | None],
                   scores: dict[str, float], threshold: float) -> None:
    """Model value against target mean ± std, one line per feature, in target-std units
    (features have different units; the raw numbers are written on the right)."""
    if not row.features:
        axes.text(0.5, 0.5, "no e-feature on this protocol", transform=axes.transAxes,
                  ha="center", va="center", color=_MISSING, fontsize="small")
        axes.set_axis_off()
        return
    count = len(row.features)
    positions = list(range(count - 1, -1, -1))  # first feature on top
    axes.axvspan(-1, 1, color=_TARGET, alpha=0.08, linewidth=0)
    axes.axvline(0, color=_TARGET, linewidth=0.6)
    right_labels = []
    for feature, y in zip(row.features, positions):
        axes.errorbar([0.0], [y], xerr=[[1.0], [1.0]], fmt="s", color=_TARGET, markersize=4,
                      capsize=3, linewidth=1)
        value = _finite(values.get(feature.name))
        std = feature.std
        if value is None:
            axes.plot([MAX_DEVIATION], [y], marker="x", color=_BAD, markersize=7,
                      linestyle="none")
            right_labels.append(f"no value | {feature.mean:.3g} ± {std:.3g}")
            continue
        deviation = (value - feature.mean) / std
        marker = "o"
        if deviation > MAX_DEVIATION:
            deviation, marker = MAX_DEVIATION, ">"
        elif deviation < -MAX_DEVIATION:
            deviation, marker = -MAX_DEVIATION, "<"
        score = scores.get(feature.name, math.inf)
        colour = _OK if score < threshold else _BAD
        axes.plot([deviation], [y], marker=marker, color=colour, markersize=7,
                  linestyle="none")
        right_labels.append(f"{value:.3g} | {feature.mean:.3g} ± {std:.3g}")
    axes.set_xlim(-MAX_DEVIATION * 1.08, MAX_DEVIATION * 1.08)
    axes.set_ylim(-0.6, count - 0.4)
    axes.set_yticks(positions, [f.efeature_name or f.efel_feature_name for f in row.features],
                    fontsize="x-small")
    twin = axes.twinx()
    twin.set_ylim(axes.get_ylim())
    twin.set_yticks(positions, right_labels, fontsize="x-small")
    twin.tick_params(length=0)
    axes.tick_params(axis="x", labelsize="x-small")
    axes.grid(True, axis="x", alpha=0.3)
    axes.set_title("model | target mean ± std", fontsize="x-small", loc="right")


def _feature_legend(threshold: float) -> list[Any]:
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], marker="s", color=_TARGET, markersize=4, label="target mean ± 1 std"),
        Line2D([], [], marker="o", color=_OK, linestyle="none",
               label=f"model, feature score < {threshold:g}"),
        Line2D([], [], marker="o", color=_BAD, linestyle="none",
               label=f"model, feature score ≥ {threshold:g}"),
        Line2D([], [], marker=">", color=_BAD, linestyle="none",
               label=f"beyond ±{MAX_DEVIATION:g} std (at the edge)"),
        Line2D([], [], marker="x", color=_BAD, linestyle="none", label="no value"),
    ]


def plot_traces(access_point: Any, seed: int) -> list[Path]:
    """Voltage traces of the stored model of ``seed`` for every protocol, beside its
    e-feature values against the experimental targets.

    Simulates the model once, with every protocol (validation ones included) and the
    threshold data stored at validation. One row per protocol (pre-protocols first when
    they have features or traces): the voltage with the stimulus window shaded, and the
    model's feature values as deviations from the target mean in units of the target std,
    green when the feature's score is below ``validation_threshold``.

    Returns:
        The files written (PDF, PNG), or ``[]`` when ``plot_traces`` is off.

    Raises:
        StorageError: no stored model for ``seed``, or one lacking a free parameter.
    """
    if not figure_enabled(access_point, "traces"):
        return []
    _require_matplotlib()
    from luigi_emodel.science.evaluator import build_evaluator

    model = _stored_model(access_point, seed)
    evaluator = build_evaluator(access_point, include_validation=True)
    missing = [name for name in evaluator.param_names if name not in model.parameters]
    if missing:
        raise StorageError(
            f"{access_point.final_store.name}: {model.key}.parameters: missing free "
            f"parameter(s) {missing} of the model configuration"
        )
    result = evaluator.evaluate({name: model.parameters[name] for name in evaluator.param_names},
                                threshold_data=model.threshold_data, keep_traces=True)
    if result.failed:
        logger.warning("%s: the evaluation for the traces figure failed: %s", model.key,
                       result.failed)
    threshold = access_point.pipeline_settings.validation_threshold
    rows = _rows(evaluator, result.traces)

    figure = _new_figure(12.0, 0.6 + 2.1 * len(rows))
    grid = figure.add_gridspec(len(rows), 2, width_ratios=[1.7, 1.0])
    for index, row in enumerate(rows):
        trace_axes = figure.add_subplot(grid[index, 0])
        _draw_traces(trace_axes, row, result.traces, result.threshold_data or {},
                     result.failed)
        feature_axes = figure.add_subplot(grid[index, 1])
        _draw_features(feature_axes, row, result.features, result.scores, threshold)
        if index == len(rows) - 1:
            trace_axes.set_xlabel("time (ms)")
            feature_axes.set_xlabel("(model - target mean) / target std", fontsize="x-small")
    figure.legend(handles=_feature_legend(threshold), fontsize="x-small",
                  loc="outside lower center", ncols=5, frameon=False)
    score = f"score {model.score:.4g}" if model.score is not None else "no score"
    status = f"validation {_verdict(model.validated)}"
    if result.failed:
        status += f"; this simulation failed: {result.failed}"
    figure.suptitle(_seed_title(access_point, seed,
                                f"traces and e-features ({score}, {status})"))
    return _save(figure, access_point, "traces", seed)


# -- 3. scores -----------------------------------------------------------------------------------


def plot_scores(access_point: Any, seed: int) -> list[Path]:
    """Score of every objective of the stored model of ``seed`` (no simulation).

    Horizontal bars, optimisation objectives then validation ones (hatched, another colour),
    with the ``validation_threshold`` as a vertical line. A missing score is drawn as a grey
    bar of ``max_score``.

    Returns:
        The files written (PDF, PNG), or ``[]`` when ``plot_scores`` is off.

    Raises:
        StorageError: no stored model for ``seed``, or one without scores.
    """
    if not figure_enabled(access_point, "scores"):
        return []
    _require_matplotlib()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    model = _stored_model(access_point, seed)
    entries = [(name, _finite(value), False) for name, value in model.fitness.items()]
    entries += [(name, _finite(value), True) for name, value in model.validation_fitness.items()
                if name not in model.fitness]
    if not entries:
        raise StorageError(f"{access_point.final_store.name}: {model.key}: no scores to plot")
    settings = access_point.pipeline_settings
    threshold = settings.validation_threshold

    figure = _new_figure(8.5, 1.4 + 0.24 * len(entries))
    axes = figure.add_subplot()
    positions = list(range(len(entries) - 1, -1, -1))
    shown = [settings.max_score if value is None else value for _, value, _ in entries]
    colours = [_MISSING if value is None else _VALIDATION if validation else _OPTIMISATION
               for _, value, validation in entries]
    hatches = ["xx" if value is None else "//" if validation else ""
               for _, value, validation in entries]
    bars = axes.barh(positions, shown, color=colours, height=0.7)
    for bar, hatch in zip(bars, hatches):
        bar.set_hatch(hatch)
        bar.set_edgecolor("white" if hatch else bar.get_facecolor())
    right = max(max(shown), threshold) * 1.15
    for y, (_, value, _), length in zip(positions, entries, shown):
        axes.text(length + right * 0.01, y, "no value" if value is None else f"{value:.3g}",
                  va="center", fontsize="x-small", color=_BAD if value is None or
                  value >= threshold else "black")
    axes.axvline(threshold, color=_BAD, linestyle="--", linewidth=1)
    axes.set_xlim(0, right)
    axes.set_ylim(-0.6, len(entries) - 0.4)
    axes.set_yticks(positions, [name for name, _, _ in entries], fontsize="x-small")
    axes.set_xlabel("score (|value - target mean| / target std)")
    axes.grid(True, axis="x", alpha=0.3)
    handles = [Patch(color=_OPTIMISATION, label="optimisation objective")]
    if any(validation for _, _, validation in entries):
        handles.append(Patch(facecolor=_VALIDATION, edgecolor="white", hatch="//",
                             label="validation objective"))
    if any(value is None for _, value, _ in entries):
        handles.append(Patch(facecolor=_MISSING, edgecolor="white", hatch="xx",
                             label=f"no value (scored {settings.max_score:g})"))
    handles.append(Line2D([], [], color=_BAD, linestyle="--",
                          label=f"validation threshold ({threshold:g})"))
    axes.legend(handles=handles, fontsize="x-small", loc="lower right", framealpha=0.9)
    score = f"total {model.score:.4g}" if model.score is not None else "no total"
    figure.suptitle(_seed_title(access_point, seed, f"scores ({score}, validation "
                                                    f"{_verdict(model.validated)})"))
    return _save(figure, access_point, "scores", seed)


# -- 4. parameter distributions ----------------------------------------------------------------


def _normalised(value: float, low: float, high: float) -> float:
    return 0.5 if high == low else (value - low) / (high - low)


def plot_parameter_distributions(access_point: Any,
                                 ground_truth: dict[str, float] | None = None) -> list[Path]:
    """Free parameters of the stored models of this e-model, each scaled to its bounds.

    One row per free parameter, its bounds mapped to [0, 1] (written on the right); a point
    per model: filled for models that passed validation, hollow grey for the others (failed
    or not checked yet), so that the validated ones stand out against what was tried.

    Args:
        access_point: the e-model's access point.
        ground_truth: known parameter values (e.g. of a synthetic cell), drawn as stars.

    Returns:
        The files written (PDF, PNG), or ``[]`` when ``plot_distributions`` is off.

    Raises:
        StorageError: no stored model of this e-model.
    """
    if not figure_enabled(access_point, "parameters_distribution"):
        return []
    _require_matplotlib()
    from matplotlib.lines import Line2D

    models = sorted(access_point.select_models(only_validated=False, only_best=False),
                    key=lambda m: m.seed)
    if not models:
        raise StorageError(f"{access_point.final_store.name}: no stored model of "
                           f"{access_point.emodel_metadata.emodel!r} to plot")
    parameters = access_point.get_model_configuration().free_parameters
    if not parameters:
        raise ConfigurationError(f"{access_point.emodel_metadata.emodel}: the model "
                                 f"configuration has no free parameter")
    validated = [m for m in models if m.validated]
    others = [m for m in models if not m.validated]

    figure = _new_figure(8.5, 1.5 + 0.42 * len(parameters))
    axes = figure.add_subplot()
    positions = list(range(len(parameters) - 1, -1, -1))
    # Spread the points of one row vertically (by seed order) so that equal values show.
    spread = min(0.5 / max(len(models), 1), 0.1)
    offsets = {m.seed: (i - (len(models) - 1) / 2) * spread for i, m in enumerate(models)}
    lowest, highest = 0.0, 1.0
    for group, style in ((others, {"marker": "o", "facecolors": "none",
                                   "edgecolors": _MISSING}),
                         (validated, {"marker": "o", "color": _OPTIMISATION})):
        xs, ys = [], []
        for model in group:
            for parameter, y in zip(parameters, positions):
                value = model.parameters.get(parameter.full_name)
                if value is None:
                    continue
                low, high = parameter.value
                xs.append(_normalised(float(value), float(low), float(high)))
                ys.append(y + offsets[model.seed])
        if xs:
            axes.scatter(xs, ys, s=28, zorder=3, **style)
            lowest, highest = min(lowest, *xs), max(highest, *xs)
    truth_shown = False
    for parameter, y in zip(parameters, positions):
        if ground_truth and parameter.full_name in ground_truth:
            low, high = parameter.value
            x = _normalised(float(ground_truth[parameter.full_name]), float(low), float(high))
            axes.scatter([x], [y], marker="*", s=140, color=_BAD, zorder=4)
            lowest, highest = min(lowest, x), max(highest, x)
            truth_shown = True
    for bound in (0.0, 1.0):
        axes.axvline(bound, color=_TARGET, linestyle="--", linewidth=0.8)
    margin = 0.05 * (highest - lowest)
    axes.set_xlim(lowest - margin, highest + margin)
    axes.set_ylim(-0.6, len(parameters) - 0.4)
    axes.set_yticks(positions, [p.full_name for p in parameters], fontsize="small")
    twin = axes.twinx()
    twin.set_ylim(axes.get_ylim())
    twin.set_yticks(positions, [f"[{p.value[0]:.3g}, {p.value[1]:.3g}]" for p in parameters],
                    fontsize="x-small")
    twin.tick_params(length=0)
    axes.set_xlabel("value scaled to the bounds (0 = lower, 1 = upper)")
    axes.grid(True, axis="x", alpha=0.3)
    handles = [Line2D([], [], marker="o", color=_OPTIMISATION, linestyle="none",
                      label=f"validated ({len(validated)})")]
    if others:
        handles.append(Line2D([], [], marker="o", markerfacecolor="none",
                              markeredgecolor=_MISSING, linestyle="none",
                              label=f"not validated ({len(others)})"))
    if truth_shown:
        handles.append(Line2D([], [], marker="*", color=_BAD, linestyle="none",
                              markersize=10, label="ground truth"))
    figure.legend(handles=handles, fontsize="x-small", loc="outside lower center",
                  ncols=len(handles), frameon=False)
    figure.suptitle(_seed_title(access_point, None,
                                f"parameters of {len(models)} stored model(s)"))
    return _save(figure, access_point, "parameters_distribution", None)
