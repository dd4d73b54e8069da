"""DVC stage: read the raw dataset with its reader and write the common interim form to data/interim/<dataset>."""
from pipeline import paths
from pipeline.config import Params
from pipeline.data.interim import write_interim
from pipeline.data.sources import read_source
from stages.lifecycle.run import run_stage


def main(params: Params) -> None:
    source = read_source(params.data, paths.raw_dir(params.data.dataset))
    write_interim(source, paths.interim_dir(params.data.dataset), params.data.on_bad_sample)


if __name__ == "__main__":
    run_stage(__doc__, main)
