"""What every stage script shares: the --params argument and a clean exit on bad configuration."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pipeline.config import ConfigError, Params, load_params


def run_stage(description: str, stage: Callable[[Params], None]) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    args = parser.parse_args()
    try:
        params = load_params(args.params)
    except ConfigError as error:
        sys.exit(f"error in {args.params}: {error}")
    stage(params)
