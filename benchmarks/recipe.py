"""Real-data recipe benchmark: the pipeline's default recipe for each model against a plain PyTorch reference.

    python -m benchmarks.recipe [--root ../shared/data/msrc_v2] [--epochs N] [--seed 42] [--seeds N]
                                [--budget SECONDS]

On a VOC-layout folder it trains (a) the plain reference of benchmarks/recipe_reference.py and (b) each
model with the recipe params.yaml and its defaults give it, through the train stage's own code (merge, preprocess and
`pipeline.training.train.train`, only `data.*`, `model`, `train.epochs`, `train.seed` and any
`--set KEY=VALUE` changed), and
prints per seed and epoch the val mIoU (dataset-level, 256², 255 ignored) and elapsed seconds of each, then
each model's best val mIoU as mean ± sample standard deviation over the seeds, its difference from the
reference's mean, and its mean wall-clock. Pretrained encoders are switched off (`encoder_weights: none`)
so every model starts from scratch like the reference.

`--seeds N` runs every entry with seeds `--seed` .. `--seed`+N-1: one run moves best mIoU by a few
hundredths, as much as some recipe changes do. `--budget SECONDS` compares the entries at equal training
time rather than equal epochs: no run (the reference included) starts an epoch once that many seconds have
passed, and only epochs that ended within the budget count. The models train the schedule their defaults give
them (`--epochs` overrides it), which the default recipe sizes to end within ten minutes on MSRC-sized data; the
reference, whose lr is constant, trains until the budget ends. Ten minutes at fp32 on 2 cores:

    python -m benchmarks.recipe --budget 600 --seeds 3 -S train.precision=fp32

Each result is also written to `--results` (JSON: entry -> seed -> epoch rows) as soon as it is measured;
`--only NAME...` measures some entries and the tables show every run in that file, so a long benchmark can be
split across invocations (ratios are then between runs made at different times: say so when quoting them;
give every invocation the same `--budget`). `--keep DIR` keeps each model's checkpoint and MLflow store under
DIR, to look at its predictions (`python -m pipeline.predict --model DIR/<model>/seed<N>/models/model.pt ...`).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import yaml

from benchmarks.recipe_reference import train_reference
from pipeline.config import MODELS, PRETRAINED_MODELS, Params, load_params, parse
from pipeline.data.interim import write_interim
from pipeline.data.preprocess import preprocess
from pipeline.data.sources.voc import read_custom_voc
from pipeline.logs import configure_logging
from pipeline.paths import TrainOutputs
from pipeline.training.train import train

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "reference"
UNLIMITED_EPOCHS = 10_000  # the reference under --budget: the budget ends it
BENCHMARKED = ("unet", "resnet34_unet", "multiscale_unet")  # the models the issue names; any of MODELS works
Results = dict[str, dict[int, list[dict]]]  # entry -> seed -> rows of {epoch, val_miou, seconds}


@dataclass(frozen=True)
class Summary:
    """One entry's runs: the numbers are over the `scored` runs, those with an epoch that ended within the budget."""
    runs: int
    scored: int
    mean: float     # of the runs' best val mIoU; nan when no run scored
    std: float      # sample standard deviation (n - 1); 0 for a single run
    seconds: float  # mean wall-clock to the last epoch that counts


def pipeline_params(model: str, root: Path, epochs: int | None, seed: int, tracking_uri: str,
                    overrides: tuple[str, ...] = ()) -> Params:
    """params.yaml as `dvc exp run -S model=... -S data.dataset=voc_layout -S data.root=... [-S overrides]`
    would give it (with `train.epochs` set only when `epochs` is given)."""
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["model"] = model
    raw["data"].update(dataset="voc_layout", root=str(root))
    raw["train"].update(seed=seed, **({"epochs": epochs} if epochs else {}))
    raw["mlflow"] = {"tracking_uri": tracking_uri, "experiment": "recipe-benchmark"}
    if model in PRETRAINED_MODELS:
        raw["models"][model]["encoder_weights"] = "none"
    for override in overrides:
        set_dotted(raw, override)
    return parse(Params, raw, "")


def set_dotted(raw: dict, override: str) -> None:
    """Apply one `-S`-style `a.b.c=value` (value read as YAML) to the raw params, adding the keys params.yaml
    leaves to their defaults (as `-S ++a.b.c=value` does; a leading `+` or `++` is taken too)."""
    key, _, value = override.lstrip("+").partition("=")
    *parents, leaf = key.split(".")
    node = raw
    for parent in parents:
        node = node.setdefault(parent, {})
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


def run_pipeline_model(model: str, seed: int, processed: Path, work: Path, args) -> list[dict]:
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    params = pipeline_params(model, args.root, args.epochs, seed, tracking_uri, tuple(args.set))
    train(params, processed, TrainOutputs.under(work / model / f"seed{seed}"), time_budget=args.budget)
    return epoch_rows(mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("recipe-benchmark").experiment_id], order_by=["start_time DESC"],
        max_results=1)[0].info.run_id)


def reference_epochs(args) -> int:
    """`--epochs`, else params.yaml's; under a budget the reference, which has a constant lr and no schedule to
    complete, trains until the budget ends."""
    if args.epochs:
        return args.epochs
    return UNLIMITED_EPOCHS if args.budget is not None else load_params(REPO_ROOT / "params.yaml").train.epochs


def run_reference(seed: int, args) -> list[dict]:
    rows = []
    num_classes = len(read_custom_voc(args.root, None).classes)
    train_reference(args.root / "VOCdevkit" / "VOC2012" if (args.root / "VOCdevkit").is_dir() else args.root,
                    num_classes, reference_epochs(args), seed,
                    lambda epoch, miou, seconds: rows.append({"epoch": epoch, "val_miou": miou, "seconds": seconds}),
                    time_budget=args.budget)
    return rows


def load_results(path: Path) -> Results:
    """The runs earlier invocations wrote to `--results`; JSON keys are strings, seeds are ints."""
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    if any(isinstance(runs, list) for runs in raw.values()):
        raise SystemExit(f"{path} holds one run per entry with no seed (written before --seeds existed): "
                         "move it away or name another file with --results")
    return {name: {int(seed): rows for seed, rows in runs.items()} for name, runs in raw.items()}


def within(rows: list[dict], budget: float | None) -> list[dict]:
    """The epochs that ended within the budget: a run stops only after the epoch that overruns it."""
    return [row for row in rows if budget is None or row["seconds"] <= budget]


def summarize(results: Results, budget: float | None) -> dict[str, Summary]:
    """Each entry's best val mIoU over its seeds, counting only the epochs that ended within the budget."""
    summaries = {}
    for name, runs in results.items():
        counted = [rows for rows in (within(rows, budget) for rows in runs.values()) if rows]
        bests = [max(row["val_miou"] for row in rows) for rows in counted]
        summaries[name] = Summary(
            runs=len(runs), scored=len(counted), mean=statistics.fmean(bests) if bests else math.nan,
            std=statistics.stdev(bests) if len(bests) > 1 else 0.0,
            seconds=statistics.fmean(rows[-1]["seconds"] for rows in counted) if counted else math.nan)
    return summaries


def ordered(names) -> list[str]:
    return [name for name in (REFERENCE, *MODELS) if name in names]


def print_tables(results: Results, budget: float | None) -> None:
    """Per seed, each entry's val mIoU and elapsed seconds after every epoch that counts."""
    names = ordered(results)
    for seed in sorted({seed for runs in results.values() for seed in runs}):
        counted = {name: within(results[name][seed], budget) for name in names if seed in results[name]}
        print(f"\nseed {seed}\nepoch " + " ".join(f"{name:>24}" for name in counted))
        for epoch in range(1, max(len(rows) for rows in counted.values()) + 1):
            cells = [next((f"{r['val_miou']:.3f} @ {r['seconds']:7.0f}s" for r in rows if r["epoch"] == epoch), "")
                     for rows in counted.values()]
            print(f"{epoch:>5} " + " ".join(f"{cell:>24}" for cell in cells))


def print_summary(summaries: dict[str, Summary], budget: float | None) -> None:
    scope = "every epoch" if budget is None else f"epochs that ended within {budget:g} s"
    print(f"\nbest val mIoU over seeds ({scope}): mean ± sample std, then mean wall-clock to the last of them")
    reference = summaries.get(REFERENCE)
    for name in ordered(summaries):
        summary = summaries[name]
        if not summary.scored:
            print(f"{name:>16}: no epoch ended within the budget ({summary.runs} runs)")
            continue
        std = f"{summary.std:.3f}" if summary.scored > 1 else "-"
        line = (f"{name:>16}: {summary.mean:.3f} ± {std} over {summary.scored} of {summary.runs} seeds, "
                f"wall-clock {summary.seconds:.0f} s")
        if name != REFERENCE and reference and reference.scored:
            line += (f"; {summary.mean - reference.mean:+.3f} against the reference's mean, "
                     f"{summary.seconds / reference.seconds:.2f}x its wall-clock")
        print(line)


def main() -> None:
    configure_logging()  # the training's time-stamped epoch lines
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "msrc_v2",
                        help="a VOC-layout folder with classes.txt (default: ../shared/data/msrc_v2)")
    parser.add_argument("--epochs", type=int,
                        help="the schedule's length (default: each model's recipe in params.yaml)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", type=int, default=1, help="runs per entry, with seeds --seed, --seed+1, ...")
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help="training time per run: no epoch starts after it, none ending after it counts")
    parser.add_argument("--only", nargs="+", choices=(REFERENCE, *MODELS), default=(REFERENCE, *BENCHMARKED))
    parser.add_argument("--results", type=Path, default=Path("recipe_results.json"))
    parser.add_argument("--set", "-S", action="append", default=[], metavar="KEY=VALUE",
                        help="a params override for the pipeline models, as `dvc exp run -S` (for ablations)")
    parser.add_argument("--keep", type=Path, help="train under this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    results = load_results(args.results)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep.resolve() if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        processed = None
        for name in args.only:
            for seed in range(args.seed, args.seed + args.seeds):
                print(f"=== {name} seed {seed}", flush=True)
                if name == REFERENCE:
                    rows = run_reference(seed, args)
                else:
                    image_size = load_params(REPO_ROOT / "params.yaml").data.image_size
                    processed = processed or prepare(args.root, work, image_size)
                    rows = run_pipeline_model(name, seed, processed, work, args)
                results.setdefault(name, {})[seed] = rows
                args.results.write_text(json.dumps(results, indent=1))
                if args.budget is not None:
                    print(f"{name} seed {seed}: {len(within(rows, args.budget))} of its {len(rows)} epochs ended "
                          f"within {args.budget:g} s", flush=True)
    print_tables(results, args.budget)
    print_summary(summarize(results, args.budget), args.budget)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"benchmark took {time.perf_counter() - start:.0f} s")
