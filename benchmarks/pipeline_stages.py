"""Per-stage time of the default `dvc repro` from fresh clones, for one or two revisions side by side.

    python -m benchmarks.pipeline_stages [--rev HEAD] [--vs REV] [-S train.precision=fp32]

Each revision is cloned into a temporary folder, `-S` overrides are written into its params.yaml, and
`dvc repro --force` runs there with this interpreter's environment (requirements.txt installed), as a new user's
first run would: no DVC cache, no MLflow store. `--force` runs every stage, as on a CPU whose training does not
give the committed model byte for byte (plain `dvc repro` then skips evaluate and plot). A stage's time runs
from DVC's "Running stage" line to the next one (the last to DVC's exit), so DVC's own hashing and checks count
where a user waits for them. With `--vs`, the two revisions run one after the other and the table gives each
stage's ratio.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.recipe import set_dotted

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"Running stage '([^']+)'")


def clone(rev: str, into: Path, overrides: list[str]) -> Path:
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(into)], check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "--quiet", rev], check=True)
    params_file = into / "params.yaml"
    raw = yaml.safe_load(params_file.read_text())
    for override in overrides:
        set_dotted(raw, override)
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    return into


def environment() -> dict:
    """This interpreter's tools first on PATH, so `dvc` and the stages' `python` are the ones benchmarked."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def timed_repro(repo: Path) -> tuple[dict[str, float], float]:
    """Seconds per stage and in all, read from `dvc repro`'s output as it appears."""
    start = time.perf_counter()
    process = subprocess.Popen(["dvc", "repro", "--force"], cwd=repo, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    stages, current, since = {}, None, start
    for line in process.stdout:
        found = STAGE_LINE.search(line)
        if found:
            now = time.perf_counter()
            if current:
                stages[current] = now - since
            current, since = found.group(1), now
    if process.wait():
        raise SystemExit(f"dvc repro failed in {repo} (exit {process.returncode})")
    end = time.perf_counter()
    stages[current] = end - since
    return stages, end - start


def outcome(repo: Path) -> str:
    """The quality the run reached: best val mIoU and its epoch, the evaluate stage's mIoU."""
    best = json.loads((repo / "reports/train/metrics.json").read_text())
    evaluated = json.loads((repo / "reports/eval/metrics.json").read_text())
    with open(repo / "reports/train/history.csv") as history:
        epochs = len(list(csv.DictReader(history)))
    return (f"best val mIoU {best['val_miou']:.3f} at epoch {best['best_epoch']} of {epochs}, "
            f"eval mIoU {evaluated['miou']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--vs", help="a second revision, run after the first")
    parser.add_argument("--set", "-S", action="append", default=[], metavar="KEY=VALUE",
                        help="a params.yaml override for both revisions, as `dvc exp run -S`")
    args = parser.parse_args()
    revs = [args.rev] + ([args.vs] if args.vs else [])
    timings = {}
    for rev in revs:
        with tempfile.TemporaryDirectory() as tmp:
            repo = clone(rev, Path(tmp) / "repo", args.set)
            timings[rev] = timed_repro(repo)
            print(f"{rev}: {timings[rev][1]:.1f} s; {outcome(repo)}", flush=True)
    stages = list(dict.fromkeys(stage for rev in revs for stage in timings[rev][0]))
    print(f"\n{'stage':12s}" + "".join(f"{rev:>14s}" for rev in revs) + ("   ratio" if args.vs else ""))
    for stage in [*stages, "total"]:
        seconds = [timings[rev][1] if stage == "total" else timings[rev][0].get(stage, float("nan")) for rev in revs]
        ratio = f"{seconds[0] / seconds[1]:8.2f}" if args.vs else ""
        print(f"{stage:12s}" + "".join(f"{value:13.1f}s" for value in seconds) + ratio)


if __name__ == "__main__":
    main()
