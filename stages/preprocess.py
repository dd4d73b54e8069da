"""DVC stage: resize the interim form into memory-mappable arrays in data/processed/<dataset>."""
from pipeline import paths
from pipeline.config import Params
from pipeline.data.preprocess import preprocess
from stages.lifecycle.run import run_stage


def main(params: Params) -> None:
    dataset = params.data.dataset
    preprocess(paths.interim_dir(dataset), paths.processed_dir(dataset), params.data.image_size)


if __name__ == "__main__":
    run_stage(__doc__, main)
