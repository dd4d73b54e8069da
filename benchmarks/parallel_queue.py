"""Two queued experiments run by one DVC queue worker, then by two at once, in one invocation.

    python -m benchmarks.parallel_queue [--rev HEAD] [-S train.precision=fp32] [-S train.num_threads=0]

A fresh clone of `--rev` runs its data stages once (so neither round downloads or preprocesses), then for
-j 1 and -j 2 in turn queues the same two experiments (`dvc exp run --queue -S train.seed=...`) and runs
them with `dvc exp run --run-all -j N` (DVC's queue workers, as `dvc queue start -j N` starts them, waited
for). It prints both wall-clock times and their ratio. `-S train.num_threads=0` (torch's default: every
training takes every core) shows what `auto` saves.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.pipeline_stages import clone, environment

SEEDS = (1, 2)


def dvc(repo: Path, *args: str) -> str:
    result = subprocess.run(["dvc", *args], cwd=repo, env=environment(), capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"dvc {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def run_queue(repo: Path, workers: int) -> float:
    """Seconds for the queue's workers to run both experiments; fails unless both succeeded."""
    names = [f"j{workers}-seed{seed}" for seed in SEEDS]
    for name, seed in zip(names, SEEDS):
        dvc(repo, "exp", "run", "--queue", "--name", name, "-S", f"train.seed={seed}")
    start = time.perf_counter()
    dvc(repo, "exp", "run", "--run-all", "-j", str(workers))
    seconds = time.perf_counter() - start
    status = dvc(repo, "queue", "status")
    failed = [name for name in names if not re.search(rf"\b{name}\b.*\bSuccess\b", status)]
    if failed:
        raise SystemExit(f"experiments {failed} did not succeed:\n{status}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--set", "-S", action="append", default=[], metavar="KEY=VALUE",
                        help="a params.yaml override for every experiment, as `dvc exp run -S`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = clone(args.rev, Path(tmp) / "repo", args.set)
        git(repo, "-c", "user.name=benchmark", "-c", "user.email=benchmark@localhost", "commit", "-qam",
            "benchmark params")
        dvc(repo, "repro", "preprocess")
        seconds = {workers: run_queue(repo, workers) for workers in (1, 2)}
    print(f"{' '.join(sys.argv[1:])}\ntwo experiments, 1 worker: {seconds[1]:.1f} s; 2 workers: {seconds[2]:.1f} s; "
          f"-j 2 / -j 1 = {seconds[2] / seconds[1]:.2f}")


if __name__ == "__main__":
    main()
