"""Single-class benchmark: per-class IoU of the recipe on merged real single-class sets.

    python -m benchmarks.single_class [--shared-data ../shared/data] [-S KEY=VALUE ...]

Builds the merged ISBI 2012 membrane / DRIVE vessel / EPFL mitochondrion root
(scripts/make_single_class_root.py), runs the merge, preprocess, train and evaluate stages' code on it with
params.yaml (`data.dataset=single_class`, plus any `-S` override, as `dvc exp run -S` would) and prints each
class's IoU at the original resolution. Thin classes (DRIVE's vessels, 1-2 px at 256²) are the ones to watch:
`-S data.image_size=512 -S augment.crop_size=256 -S augment.crops_per_image=8 -S train.class_weights=balanced`
is the manual's recipe for them (docs/explanation/recipes.md).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.recipe import REPO_ROOT, set_dotted
from pipeline.config import Params, parse
from pipeline.data.interim import write_interim
from pipeline.data.preprocess import preprocess
from pipeline.data.sources import read_source
from pipeline.evaluation.evaluate import evaluate
from pipeline.logs import configure_logging
from pipeline.paths import TrainOutputs
from pipeline.training.train import train
from scripts.make_single_class_root import build


def single_class_params(root: Path, work: Path, overrides: list[str]) -> Params:
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["data"].update(dataset="single_class", root=str(root))
    raw["mlflow"] = {"tracking_uri": f"sqlite:///{work / 'mlflow.db'}", "experiment": "single-class-benchmark"}
    for override in overrides:
        set_dotted(raw, override)
    return parse(Params, raw, "")


def main() -> None:
    configure_logging()  # the training's time-stamped epoch lines
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared-data", type=Path, default=REPO_ROOT.parent / "shared" / "data",
                        help="the folder holding isbi2012_membrane, drive and epfl_mitochondria")
    parser.add_argument("--set", "-S", action="append", default=[], metavar="KEY=VALUE",
                        help="a params override, as `dvc exp run -S`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build(args.shared_data, work / "root")
        params = single_class_params(work / "root", work, args.set)
        write_interim(read_source(params.data, work / "root"), work / "interim", params.data.on_bad_sample)
        preprocess(work / "interim", work / "processed", params.data.image_size)
        outputs = TrainOutputs.under(work)
        best = train(params, work / "processed", outputs)
        metrics = evaluate(work / "processed", work / "interim", outputs.model, work / "eval", params.evaluate)
        per_class = json.loads((work / "eval" / "per_class_iou.json").read_text())
    print(f"\nbest val mIoU {best['val_miou']:.3f} (epoch {best['best_epoch']}), "
          f"evaluate mIoU at original size {metrics['miou']:.3f}")
    for name, iou in per_class.items():
        print(f"{name:>16}: IoU {'n/a' if iou is None else f'{iou:.3f}'}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"benchmark took {time.perf_counter() - start:.0f} s")
