"""Compare the example's best validated model with the ground truth.

Prints two Markdown tables: every optimisation feature of the model against its target
(distance in target stds), and each free parameter against ``ground_truth.json`` (relative
error). Run after ``make example``::

    python configs/example/scripts/report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from luigi_emodel import LocalAccessPoint

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    access_point = LocalAccessPoint("example", emodel_dir=ROOT)
    models = access_point.select_models(only_validated=True, only_best=True)
    if not models:
        print("no validated model yet: run `make example` first", file=sys.stderr)
        return 1
    model = models[0]
    features = access_point.get_fitness_calculator_configuration()
    validation = {p.name for p in features.protocols if p.validation}
    print(f"Best validated model: seed {model.seed}, score {model.score:.2f}\n")
    print("| feature | target mean ± std | model | distance (std) |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    for feature in features.efeatures:
        if feature.protocol_name in validation:
            continue
        value = model.features.get(feature.name)
        distance = model.fitness.get(feature.name)
        shown = "n/a" if value is None else f"{value:.4g}"
        print(f"| {feature.name} | {feature.mean:.4g} ± {feature.std:.2g} | {shown} | "
              f"{distance:.2f} |")
        worst = max(worst, distance or 0.0)
    print(f"\nLargest distance: {worst:.2f} std\n")
    truth = json.loads((ROOT / "ground_truth.json").read_text())["parameters"]
    print("| parameter | true | found | relative error |")
    print("|---|---:|---:|---:|")
    for name, true in truth.items():
        found = model.parameters[name]
        print(f"| {name} | {true:.4g} | {found:.4g} | {abs(found - true) / abs(true):.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
