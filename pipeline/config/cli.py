"""`python -m pipeline.config [--show] [FILE]`: check a params file before DVC reads it, or print every value a run
with it uses."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from pipeline.config.loading import load_params
from pipeline.config.params import Params
from pipeline.config.plain_data import active
from pipeline.config.problems import ConfigError


def load_params_or_exit(path: Path | str) -> Params:
    """The params in `path`, or the process ends with one line naming the file and what is wrong (every stage, and
    the check below)."""
    if not Path(path).is_file():
        sys.exit(f"error: {path}: no such file")
    try:
        return load_params(path)
    except ConfigError as error:
        sys.exit(f"error in {path}: {error}")


def main(argv: list[str] | None = None) -> None:
    """Check a params file, e.g. one you were sent, before `dvc repro` reads it: one line either way. With --show,
    print every value a run with it uses instead, the defaults of the keys the file leaves out included."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.config", description=main.__doc__)
    parser.add_argument("file", nargs="?", default="params.yaml", type=Path, help="default: params.yaml")
    parser.add_argument("--show", action="store_true",
                        help="print the chosen model's and dataset's settings and all others, as YAML")
    args = parser.parse_args(argv)
    params = load_params_or_exit(args.file)
    if args.show:
        print(yaml.safe_dump(active(params, mode="json"), sort_keys=False), end="")
    else:
        print(f"{args.file}: valid")
