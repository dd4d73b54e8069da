"""DVC stage: train the model chosen by `model`, tracked in MLflow; best checkpoint to models/model.pt.
With `train.distributed.nproc_per_node` above 1 it re-launches itself through torchrun, one process per device."""
from pipeline import paths
from pipeline.config import Params
from pipeline.training import distributed
from pipeline.training.train import train
from stages.lifecycle.run import run_stage


def main(params: Params) -> None:
    processes = params.train.distributed.nproc_per_node
    if processes > 1 and not distributed.launched_by_torchrun():
        distributed.relaunch_under_torchrun(processes, "stages.train")
    train(params, paths.processed_dir(params.data.dataset), paths.TrainOutputs.under())


if __name__ == "__main__":
    run_stage(__doc__, main)
