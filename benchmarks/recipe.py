"""Real-data recipe benchmark: the pipeline's default recipe for each model against a plain PyTorch reference.

    python -m benchmarks.recipe [--root ../shared/data/msrc_v2] [--epochs 12] [--seed 42]

On a VOC-layout folder it trains (a) the plain reference of benchmarks/recipe_reference.py and (b) each
model with the recipe params.yaml gives it, through the train stage's own code (merge, preprocess and
`pipeline.training.loop.train`, only `data.*`, `model`, `train.epochs`, `train.seed` and any
`--set KEY=VALUE` changed), and
prints per epoch the val mIoU (dataset-level, 256², 255 ignored) and elapsed seconds of each, then each
model's best mIoU and wall-clock as ratios of the reference's. Pretrained encoders are switched off
(`encoder_weights: none`) so every model starts from scratch like the reference.

Each result is also written to `--results` (JSON) as soon as it is measured; `--only NAME...` measures
some entries and the table shows every entry in that file, so a long benchmark can be split across
invocations (ratios are then between runs made at different times: say so when quoting them).
`--keep DIR` keeps each model's checkpoint and MLflow store under DIR, to look at its predictions
(`python -m pipeline.predict --model DIR/<model>/models/model.pt ...`).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import mlflow
import yaml

from benchmarks.recipe_reference import train_reference
from pipeline.config import MODELS, Params, load_params, parse
from pipeline.data.interim import write_interim
from pipeline.data.preprocess import preprocess
from pipeline.data.sources.voc import read_custom_voc
from pipeline.paths import TrainOutputs
from pipeline.training.loop import train

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "reference"
BENCHMARKED = ("unet", "resnet34_unet", "multiscale_unet")  # the models the issue names; any of MODELS works


def pipeline_params(model: str, root: Path, epochs: int, seed: int, tracking_uri: str,
                    overrides: tuple[str, ...] = ()) -> Params:
    """params.yaml as `dvc exp run -S model=... -S data.dataset=voc_layout -S data.root=... [-S overrides]`
    would give it."""
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["model"] = model
    raw["data"].update(dataset="voc_layout", root=str(root))
    raw["train"].update(epochs=epochs, seed=seed)
    raw["mlflow"] = {"tracking_uri": tracking_uri, "experiment": "recipe-benchmark"}
    if "encoder_weights" in raw["models"][model]:
        raw["models"][model]["encoder_weights"] = "none"
    for override in overrides:
        set_dotted(raw, override)
    return parse(Params, raw, "")


def set_dotted(raw: dict, override: str) -> None:
    """Apply one `-S`-style `a.b.c=value` (value read as YAML) to the raw params."""
    key, _, value = override.partition("=")
    *parents, leaf = key.split(".")
    node = raw
    for parent in parents:
        node = node[parent]
    node[leaf] = yaml.safe_load(value)


def prepare(root: Path, work: Path, image_size: int) -> Path:
    """The merge and preprocess stages' code on the folder: processed arrays under `work`."""
    write_interim(read_custom_voc(root, None), work / "interim")
    preprocess(work / "interim", work / "processed", image_size)
    return work / "processed"


def epoch_rows(run_id: str) -> list[dict]:
    """Per-epoch val mIoU and seconds since the run started, from the MLflow run the training logged."""
    client = mlflow.MlflowClient()
    start = client.get_run(run_id).info.start_time
    history = client.get_metric_history(run_id, "val_miou")
    return [{"epoch": m.step, "val_miou": m.value, "seconds": (m.timestamp - start) / 1000}
            for m in sorted(history, key=lambda m: m.step)]


def run_pipeline_model(model: str, processed: Path, work: Path, args) -> list[dict]:
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    params = pipeline_params(model, args.root, args.epochs, args.seed, tracking_uri, tuple(args.set))
    train(params, processed, TrainOutputs.under(work / model))
    return epoch_rows(mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("recipe-benchmark").experiment_id], order_by=["start_time DESC"],
        max_results=1)[0].info.run_id)


def run_reference(args) -> list[dict]:
    rows = []
    num_classes = len(read_custom_voc(args.root, None).classes)
    train_reference(args.root / "VOCdevkit" / "VOC2012" if (args.root / "VOCdevkit").is_dir() else args.root,
                    num_classes, args.epochs, args.seed,
                    lambda epoch, miou, seconds: rows.append({"epoch": epoch, "val_miou": miou, "seconds": seconds}))
    return rows


def print_table(results: dict[str, list[dict]]) -> None:
    names = [name for name in (REFERENCE, *MODELS) if name in results]
    print("\nepoch " + " ".join(f"{name:>24}" for name in names))
    for epoch in range(1, max(len(rows) for rows in results.values()) + 1):
        cells = [next((f"{r['val_miou']:.3f} @ {r['seconds']:7.0f}s" for r in results[name] if r["epoch"] == epoch),
                      "") for name in names]
        print(f"{epoch:>5} " + " ".join(f"{cell:>24}" for cell in cells))
    if REFERENCE not in results:
        return
    reference_best = max(r["val_miou"] for r in results[REFERENCE])
    reference_time = results[REFERENCE][-1]["seconds"]
    print(f"\nreference best val mIoU {reference_best:.3f}, {reference_time:.0f} s")
    for name in names[1:]:
        best, seconds = max(r["val_miou"] for r in results[name]), results[name][-1]["seconds"]
        print(f"{name:>16}: best {best:.3f} = {best / reference_best:.2f}x reference ({best - reference_best:+.3f}), "
              f"wall-clock {seconds:.0f} s = {seconds / reference_time:.2f}x reference")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "msrc_v2",
                        help="a VOC-layout folder with classes.txt (default: ../shared/data/msrc_v2)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--only", nargs="+", choices=(REFERENCE, *MODELS), default=(REFERENCE, *BENCHMARKED))
    parser.add_argument("--results", type=Path, default=Path("recipe_results.json"))
    parser.add_argument("--set", "-S", action="append", default=[], metavar="KEY=VALUE",
                        help="a params override for the pipeline models, as `dvc exp run -S` (for ablations)")
    parser.add_argument("--keep", type=Path, help="train under this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep.resolve() if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        processed = None
        for name in args.only:
            print(f"=== {name}", flush=True)
            if name == REFERENCE:
                results[name] = run_reference(args)
            else:
                image_size = load_params(REPO_ROOT / "params.yaml").data.image_size
                processed = processed or prepare(args.root, work, image_size)
                results[name] = run_pipeline_model(name, processed, work, args)
            args.results.write_text(json.dumps(results, indent=1))
    print_table(results)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"benchmark took {time.perf_counter() - start:.0f} s")
