"""Training benchmark: the default model on the group split, and on a random image split.

Trains the default `TrainConfig` twice on `data/raw` in this process, with the same seed:
once on the leakage-free pseudo-patient split (the honest figure, the one the gate uses) and
once on a per-image stratified random split (the seed project's method, for contrast: near-
identical neighbouring slices land on both sides). Prints one table row per split, with group
bootstrap 95% intervals, study-level macro-F1 and the wall time of each training, and writes
the figures to var/bench/training.json. Run by hand or by `make bench` (about 2 x 2 minutes
on 2 cores). `--split group` runs only the honest one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lung_model.data.audit import inspect  # noqa: E402
from lung_model.data.split import check, make_split, random_image_split  # noqa: E402
from lung_model.settings import get_settings  # noqa: E402
from lung_model.training.calibration import apply_temperature  # noqa: E402
from lung_model.training.fit import TrainConfig, fit, load_part, predict_logits  # noqa: E402
from lung_model.training.metrics import evaluate  # noqa: E402


def run(split_name: str, config: TrainConfig, data: Path) -> dict:
    inventory = inspect(data)
    split = make_split(inventory) if split_name == "group" else random_image_split(inventory)
    leaky = False
    try:
        check(split)
    except AssertionError:
        leaky = True
    started = time.monotonic()
    parts = {p: load_part(split, p, data, config.preprocess()) for p in ("train", "val", "test")}
    fitted = fit(config, parts["train"], parts["val"], progress=False)
    minutes = (time.monotonic() - started) / 60
    test = parts["test"]
    probabilities = apply_temperature(predict_logits(fitted.network, test.x), fitted.temperature)
    threshold = fitted.malignant_threshold
    result = evaluate(test.y, probabilities, test.groups, config.bootstrap_rounds, threshold)
    return {"split": split_name, "leaky": leaky, "minutes": minutes, "n_test": len(test.y),
            "best_epoch": fitted.best_epoch, "temperature": fitted.temperature, **result}  # fmt: skip


def row(r: dict) -> str:
    s, ci = r["slice"], r["ci95"]

    def with_ci(name: str) -> str:
        return f"{s[name]:.3f} [{ci[name][0]:.2f}, {ci[name][1]:.2f}]"

    return (
        f"| {r['split']}{' (leaky)' if r['leaky'] else ''} | {r['n_test']} | {s['accuracy']:.3f} "
        f"| {with_ci('macro_f1')} | {with_ci('recall_malignant')} | {s['recall_benign']:.3f} "
        f"| {s['ece']:.3f} | {s['roc_auc_macro']:.3f} | {r['study']['macro_f1']:.3f} "
        f"| {r['minutes']:.1f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", choices=["group", "random", "both"], default="both")
    parser.add_argument("--epochs", type=int, help="override the default (for a quick look)")
    args = parser.parse_args()
    config = TrainConfig()
    if args.epochs:
        config = TrainConfig(epochs=args.epochs, min_epochs=min(config.min_epochs, args.epochs - 1))
    data = get_settings().raw_data
    names = ["group", "random"] if args.split == "both" else [args.split]
    results = [run(name, config, data) for name in names]
    print("| split | test slices | accuracy | macro-F1 [95% CI] | malignant recall [95% CI] "
          "| benign recall | ECE | ROC-AUC | study macro-F1 | train min |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        print(row(result))
    out = get_settings().home / "bench" / "training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
