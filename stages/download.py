"""DVC stage: fetch (or, for `synthetic`, generate) the chosen dataset into data/raw/<dataset>."""
from pipeline import paths
from pipeline.config import Params
from pipeline.data.sources import download_source
from stages.lifecycle.run import run_stage


def main(params: Params) -> None:
    download_source(params.data, paths.raw_dir(params.data.dataset))


if __name__ == "__main__":
    run_stage(__doc__, main)
