"""TPE with median pruning against random search without pruning: the same space, number of trials and seeds, on
a VOC-layout folder (default MSRC-v2), in one invocation.

    python -m benchmarks.search [--trials 16] [--seeds 1] [--space sweeps/msrc.yaml] [--root ../shared/data/msrc_v2]
                                [-S train.precision=fp32]

A fresh clone of `--rev` gets `data.dataset=voc_layout`, `data.root=--root` and the `-S` values in its params and
runs its data stages once; then, for each seed, each arm runs a study of `--trials` trials with one worker
(`python -m pipeline.search`, each trial a `dvc exp run --temp`), the space file's ranges with the arm's sampler and
pruner. It prints, per arm, the best val mIoU found (mean over seeds), the wall-clock time, the CPU time of every
process the study ran (its share of the cores, so a fair measure when something else ran beside it), the epochs
trained against those the trials asked for (the epochs pruning saved), and the pruned arm's time as a share of
random search's.

A quick study on a subset of MSRC-v2 (about 40 minutes on 2 cores):

    python -m benchmarks.search --trials 10 --space sweeps/msrc_quick.yaml -S data.subset.train=96 \
        -S data.subset.val=48 -S train.precision=fp32
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml

from benchmarks.pipeline_stages import REPO_ROOT, clone, environment

ARMS = {
    "tpe+median": lambda seed: {"sampler": {"type": "tpe", "seed": seed, "n_startup_trials": 4},
                                "pruner": {"type": "median", "n_startup_trials": 4, "n_warmup_steps": 1}},
    "random": lambda seed: {"sampler": {"type": "random", "seed": seed}, "pruner": {"type": "none"}},
}


@dataclass
class Outcome:
    best: float
    seconds: float
    cpu_seconds: float
    epochs_trained: int
    epochs_asked: int


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m benchmarks.search", description=__doc__.split("\n\n")[0])
    parse.add_argument("--trials", type=int, default=16, help="trials per study (default 16)")
    parse.add_argument("--seeds", type=int, default=1, help="studies per arm, sampler seeds 0, 1, ...")
    parse.add_argument("--space", type=Path, default=REPO_ROOT / "sweeps" / "msrc.yaml")
    parse.add_argument("--root", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "msrc_v2",
                       help="a VOC-layout dataset folder")
    parse.add_argument("--rev", default="HEAD")
    parse.add_argument("-S", "--set", dest="fixed", action="append", default=[], metavar="KEY=VALUE",
                       help="a params override for every trial (default: train.precision=fp32)")
    return parse


def arm_space(space: dict, arm: str, seed: int) -> dict:
    """The space file's ranges and metric with the arm's sampler and pruner."""
    return {**space, **ARMS[arm](seed)}


def epochs(study: optuna.Study) -> tuple[int, int]:
    """Epochs trained (reported to the trials) and epochs the finished trials asked for (`train.epochs` when
    searched, else what the complete ones trained)."""
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    trained = sum(len(trial.intermediate_values) for trial in trials)
    full = max((len(t.intermediate_values) for t in trials if t.state.name == "COMPLETE"), default=0)
    return trained, sum(trial.params.get("train.epochs", full) for trial in trials)


def children_cpu_seconds() -> float:
    """User + system time of every finished descendant (each parent waited for its own)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_study(repo: Path, storage: str, name: str, space_file: Path, trials: int) -> Outcome:
    started, cpu_started = time.perf_counter(), children_cpu_seconds()
    subprocess.run([sys.executable, "-m", "pipeline.search", "--study", name, "--storage", storage, "--space",
                    str(space_file), "--trials", str(trials)], cwd=repo, env=environment(), check=True)
    seconds, cpu_seconds = time.perf_counter() - started, children_cpu_seconds() - cpu_started
    study = optuna.load_study(study_name=name, storage=storage)
    return Outcome(study.best_value, seconds, cpu_seconds, *epochs(study))


def report(outcomes: dict[str, list[Outcome]]) -> str:
    lines = ["| arm | best val mIoU (mean over seeds) | wall-clock | CPU time | epochs trained / asked |",
             "|---|---|---|---|---|"]
    for arm, runs in outcomes.items():
        lines.append(f"| {arm} | {statistics.mean(r.best for r in runs):.3f} | "
                     f"{statistics.mean(r.seconds for r in runs):.0f} s | "
                     f"{statistics.mean(r.cpu_seconds for r in runs):.0f} s | "
                     f"{sum(r.epochs_trained for r in runs)} / {sum(r.epochs_asked for r in runs)} |")
    pruned, plain = outcomes["tpe+median"], outcomes["random"]
    wall = sum(r.seconds for r in pruned) / sum(r.seconds for r in plain)
    cpu = sum(r.cpu_seconds for r in pruned) / sum(r.cpu_seconds for r in plain)
    return "\n".join(lines) + f"\ntpe+median / random: wall-clock {wall:.2f}, CPU time {cpu:.2f}"


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not args.root.is_dir():
        raise SystemExit(f"--root {args.root}: no such folder (a VOC-layout dataset, e.g. MSRC-v2)")
    space = yaml.safe_load(args.space.read_text())
    fixed = ["data.dataset=voc_layout", f"data.root={args.root.resolve()}", *(args.fixed or ["train.precision=fp32"])]
    outcomes: dict[str, list[Outcome]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as tmp:
        repo = clone(args.rev, Path(tmp) / "repo", fixed)
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=benchmark", "-c", "user.email=benchmark@localhost",
                        "commit", "-qam", "benchmark params"], check=True)
        subprocess.run(["dvc", "repro", "preprocess"], cwd=repo, env=environment(), check=True)
        storage = f"sqlite:///{Path(tmp) / 'optuna.db'}"
        for seed in range(args.seeds):
            for arm in ARMS:
                space_file = Path(tmp) / f"{arm}-{seed}.yaml"
                space_file.write_text(yaml.safe_dump(arm_space(space, arm, seed), sort_keys=False))
                outcomes[arm].append(run_study(repo, storage, f"{arm.replace('+', '-')}-{seed}", space_file,
                                               args.trials))
    print(f"{' '.join(sys.argv[1:])}\n{report(outcomes)}")


if __name__ == "__main__":
    main()
