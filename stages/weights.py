"""DVC stage: check the params, that a tracking server answers, and fetch the chosen model's pretrained encoder
weights, before train runs.

DVC removes a stage's outputs before it runs the stage's command, so weights that cannot be had (offline and not
in the Hugging Face cache, a wrong path) used to fail the train stage after models/model.pt and its reports were
gone. This stage lists train's params, so it runs whenever a change of them makes train run, and first: train
depends on the record it writes (which weights, their sha256). That record is `persist` in dvc.yaml, so a failure
here removes nothing."""
import json

from pipeline import paths
from pipeline.atomic import atomic_path
from pipeline.config import Params
from stages.lifecycle.run import run_stage


def main(params: Params) -> None:
    from pipeline.tracking.store import check_server  # MLflow: 2 s to import

    check_server(params.mlflow.tracking_uri)  # an unreachable server is said here, while models/model.pt is still there
    block = params.model_params()
    weights = getattr(block, "encoder_weights", "none")
    record = {"model": params.model, "encoder_weights": weights}
    if weights != "none":
        from pipeline.digest import file_digest
        from pipeline.models.registry import encoder_of  # torch and smp: only for a model that has the weights
        from pipeline.models.weights import encoder_weights_file, read_state_dict

        key = f"models.{params.model}.encoder_weights"
        path = encoder_weights_file(encoder_of(params.model, block.model_dump()), weights, key)
        read_state_dict(path, key)  # a file that is there and reads as tensors; whether they fit, train checks
        record["sha256"] = file_digest([path])
    with atomic_path(paths.weights_record()) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    print(f"weights: {weights} for {params.model} -> {paths.weights_record()}")


if __name__ == "__main__":
    run_stage(__doc__, main)
