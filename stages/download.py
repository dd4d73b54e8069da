"""DVC stage: fetch (or, for `synthetic`, generate) the chosen dataset into data/raw/<dataset>."""
from pathlib import Path

from pipeline.config import Params
from pipeline.data.raw import download_source
from stages.cli import run_stage


def main(params: Params) -> None:
    download_source(params.data, Path("data/raw") / params.data.dataset)


if __name__ == "__main__":
    run_stage(__doc__, main)
