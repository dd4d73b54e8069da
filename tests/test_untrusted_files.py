"""Every place a model can come from (a checkpoint, the resume state, an MLflow model folder or URI) is read
without unpickling anything: a crafted pickle planted there is refused with a clear error and runs nothing."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import mlflow.pytorch
import pytest
import torch
from safetensors.torch import save_file

from pipeline.errors import UserError
from pipeline.models.checkpoint import load_model, read_checkpoint
from pipeline.models.portable import write_portable
from pipeline.models.registry import build_model
from pipeline.models.weights import read_state_dict
from pipeline.training.finetune import initial_weights
from pipeline.training.state import read_state
from tests.logged_model import CLASSES, TRAINED_SIZE, UNET_PARAMS, log_tiny_model


class Payload:
    """Unpickling this calls os.system: the classic malicious pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_file(tmp_path: Path, name: str, writer=torch.save) -> tuple[Path, Path]:
    marker = tmp_path / "payload_ran"
    path = tmp_path / name
    with path.open("wb") as file:
        writer({"architecture": "unet", "state_dict": {}, "x": Payload(marker)}, file)
    return path, marker


# torch.save's zip with a protocol-2 pickle; Python's own pickle.dump (protocol 4 and its frames), which torch's
# weights-only reader stops at before it sees the function, after a warning about the protocol
WRITERS = pytest.mark.parametrize("writer", [torch.save, pickle.dump], ids=["torch.save", "pickle.dump"])


@WRITERS
def test_a_crafted_checkpoint_is_refused_without_running_its_payload(tmp_path: Path, writer, recwarn):
    path, marker = evil_file(tmp_path, "evil.pt", writer)
    for load in (read_checkpoint, lambda p: load_model(str(p)), lambda p: initial_weights(str(p))):
        with pytest.raises(UserError, match=r"evil.pt: not a checkpoint of this project \(it would run posix.system "
                                            r"when loaded\); nothing in it was run"):
            load(path)
    assert not marker.exists()
    assert not [warning for warning in recwarn if "pickle protocol" in str(warning.message)]


def test_a_crafted_resume_state_is_ignored_without_running_its_payload(tmp_path: Path):
    path, marker = evil_file(tmp_path, "train_state.pt")
    assert read_state(path) is None
    assert not marker.exists()


def test_an_mlflow_model_folder_in_the_pickle_format_is_refused_without_running_it(tmp_path: Path):
    marker = tmp_path / "payload_ran"
    model = build_model("unet", CLASSES, UNET_PARAMS, TRAINED_SIZE)
    model.extra = Payload(marker)  # unpickling the logged module would call os.system
    folder = tmp_path / "mlflow-model"
    mlflow.pytorch.save_model(model, folder, serialization_format="pickle", pip_requirements=["torch"])
    for load in (lambda source: load_model(source), initial_weights):  # predict --model, train.init_from
        with pytest.raises(UserError, match="mlflow-model: not an MLflow model of this project .*pickle format"):
            load(str(folder))
    assert not marker.exists()
    mlflow.pytorch.load_model(str(folder))  # the control: MLflow's own pickle loader does run it
    assert marker.exists()


def test_a_safetensors_file_without_the_project_metadata_is_refused(tmp_path: Path):
    (tmp_path / "model/artifacts").mkdir(parents=True)
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "model/artifacts/model.safetensors"), metadata={"x": "1"})
    with pytest.raises(ValueError, match="without this project's 'segmentation_model' metadata"):
        load_model(str(tmp_path / "model"))


TAMPERED_CODE = "import pathlib\npathlib.Path({marker!r}).touch()\n"


@pytest.mark.slow  # creates an MLflow store
def test_tampered_mlflow_artifacts_run_nothing_through_the_project_loader(tmp_path: Path):
    """An attacker with write access to the artifact store replaces the logged code, then the weights."""
    logged = log_tiny_model(tmp_path / "store", "tampered")
    marker = tmp_path / "payload_ran"
    (logged.folder / "pyfunc.py").write_text(TAMPERED_CODE.format(marker=str(marker)))
    (logged.folder / "python_model.pkl").write_bytes(pickle.dumps(Payload(marker)))
    for source in (logged.registered, logged.run_model):
        assert load_model(source).class_names == CLASSES  # the weights alone: the logged code is not run
    assert not marker.exists()

    torch.save({"state_dict": {}, "x": Payload(marker)}, logged.folder / "artifacts/model.safetensors")
    for source in (logged.registered, logged.run_model):
        with pytest.raises(UserError, match=f"{source}: .*not a safetensors file"):
            load_model(source)
        with pytest.raises(UserError, match=f"train.init_from: {source}: .*not a safetensors file"):
            initial_weights(source)
    assert not marker.exists()


@WRITERS
def test_crafted_encoder_weights_are_refused_in_one_line_that_starts_with_the_cause(tmp_path: Path, writer, recwarn):
    path, marker = evil_file(tmp_path, "encoder.pth", writer)
    key = "models.resnet34_unet.encoder_weights"
    with pytest.raises(UserError) as error:
        read_state_dict(path, key)
    assert str(error.value) == (f"{key}: {path} would run posix.system when loaded, so it is refused (nothing in it "
                                "was run); use a file that holds the encoder's tensors only "
                                "(torch.save(encoder.state_dict(), path) or .safetensors)")
    assert not marker.exists()
    assert not [warning for warning in recwarn if "pickle protocol" in str(warning.message)]


def test_an_absurd_image_size_in_a_checkpoint_or_mlflow_model_is_refused_before_any_allocation(tmp_path: Path):
    model = build_model("unet", CLASSES, UNET_PARAMS, TRAINED_SIZE)
    payload = {"architecture": "unet", "model_params": UNET_PARAMS, "class_names": CLASSES,
               "state_dict": model.state_dict(), "image_size": 100_000}
    torch.save(payload, tmp_path / "model.pt")
    (tmp_path / "mlflow-model" / "artifacts").mkdir(parents=True)
    write_portable(payload, tmp_path / "mlflow-model" / "artifacts" / "model.safetensors")
    for source in (tmp_path / "model.pt", tmp_path / "mlflow-model"):
        with pytest.raises(UserError) as error:
            load_model(str(source))
        assert str(error.value) == (f"{source}: its metadata is refused (image_size: 100000 is not a side in pixels "
                                    "within 16..4096 (as data.image_size)); nothing was built")
