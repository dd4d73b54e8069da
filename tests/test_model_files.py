"""Issue 32: a model file is data. Whatever a checkpoint, an MLflow model folder or an ONNX graph says about itself,
`python -m pipeline.predict --model FILE` checks it against params.yaml's bounds before building or allocating
anything, never reaches the network, and refuses it in one line."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import predict
from pipeline.errors import UserError
from pipeline.models.checkpoint import load_model
from tests.crafted_models import VALID, mlflow_folder, onnx_graph

REPO_ROOT = Path(__file__).resolve().parents[1]
CAP_MB = 500  # what refusing a file may allocate beyond the code's own footprint


class ConnectionTrap:
    """A listening socket on loopback that every proxy variable points at: any HTTP(S) request the process makes
    connects here (and is closed at once), so `connections` counts every attempt to reach a network."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.connections, self.open = 0, True
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self) -> None:
        while self.open:
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def env(self) -> dict:
        proxy = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        env = {k: v for k, v in os.environ.items() if k.upper() not in ("HF_HUB_OFFLINE", "NO_PROXY")
               and not k.startswith("MLFLOW_")}
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            env[name] = env[name.lower()] = proxy
        return {**env, "PYTHONPATH": str(REPO_ROOT), "CAP_MB": str(CAP_MB)}

    def close(self) -> None:
        self.open = False
        self.thread.join()
        self.server.close()


@pytest.fixture
def trap():
    trap = ConnectionTrap()
    yield trap
    trap.close()


@pytest.fixture
def image(tmp_path) -> Path:
    Image.fromarray(np.full((40, 48, 3), 128, np.uint8)).save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


def crafted(tmp_path: Path, name: str) -> Path:
    return {
        "hub-encoder": lambda: mlflow_folder(tmp_path / name, architecture="smp",
                                             model_params={"encoder": "tu-hf-hub:timm/resnet18.a1_in1k"}),
        "wide-unet": lambda: mlflow_folder(tmp_path / name, model_params={"base_channels": 192}),
        "huge-onnx-size": lambda: onnx_graph(tmp_path / f"{name}.onnx", image_size="60000"),
    }[name]()


@pytest.mark.slow  # three interpreters importing torch and smp
@pytest.mark.parametrize("name, message", [
    ("hub-encoder", "its metadata is refused (model_params.encoder: 'tu-hf-hub:timm/resnet18.a1_in1k' names a model "
                    "on a hub, which building would fetch;"),
    ("wide-unet", "its 1 tensors do not fit the 'unet' model its metadata describes (120 tensors; 121 differ: "),
    ("huge-onnx-size", "its metadata is refused (image_size: 60000 is not a side in pixels within 16..4096"),
])
def test_predict_refuses_a_crafted_model_in_one_line_offline_fast_and_in_bounded_memory(tmp_path, trap, image, name,
                                                                                       message):
    """Before: 53 s of HEAD requests to huggingface.co, 4.8 GB for a 364-byte file, 43 GB for an ONNX image size."""
    model = crafted(tmp_path, name)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "capped_predict.py"), str(image), "--model",
                             str(model), "--out", str(tmp_path / "out")], env=trap.env(), capture_output=True,
                            text=True, timeout=120)
    took = time.perf_counter() - started
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error: --model {model}: {message}")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert trap.connections == 0
    assert took < 60  # the imports of torch, smp and timm on a busy 2-core machine; the check itself is milliseconds
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("change, message", [
    ({"class_names": [1, 2]}, "class_names: expected names of 1..100 characters, got 1"),
    ({"class_names": {"a": 0}}, "mistypes class_names"),
    ({"class_names": ["x" * 100_000 + str(i) for i in range(5)]}, "class_names: expected names of 1..100 characters"),
    ({"class_names": ["a", "a"]}, "class_names: names must be unique, 'a' appears twice"),
    ({"class_names": [f"c{i}" for i in range(300)]}, "class_names: expected a list of 1..255 names"),
    ({"model_params": {"depth": 10**12}}, "model_params.depth: must be <= 12, got 1000000000000"),
    ({"model_params": {"base_channels": "4"}}, "model_params.base_channels: expected int, got '4'"),
    ({"model_params": {"kernel": 3}}, "model_params.kernel: unknown key"),
    ({"architecture": "os.system"}, "architecture 'os.system' is not one of unet, resnet34_unet"),
    ({"model_params": {"encoder": "resnet34", "encoder_depth": 9}, "architecture": "smp"},
     "model_params.encoder_depth: must be <= 5, got 9"),
    ({"image_size": -7}, "image_size: -7 is not a side in pixels within 16..4096"),
])
def test_every_metadata_field_of_an_mlflow_model_is_checked_before_anything_is_built(tmp_path, change, message):
    folder = mlflow_folder(tmp_path / "model", **change)
    with pytest.raises(UserError) as error:
        load_model(str(folder))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert len(str(error.value)) < 1000


def test_a_checkpoint_with_non_string_class_names_is_refused_in_one_line(tmp_path, image, capsys):
    torch.save({**VALID, "class_names": [0, {"b": 1}], "state_dict": {}}, tmp_path / "model.pt")
    with pytest.raises(SystemExit) as stop:
        predict.main([str(image), "--model", str(tmp_path / "model.pt"), "--out", str(tmp_path / "out")])
    assert str(stop.value) == (f"error: --model {tmp_path / 'model.pt'}: its metadata is refused (class_names: "
                               "expected names of 1..100 characters, got 0); nothing was built")


@pytest.mark.parametrize("metadata, channels, message", [
    ({"image_size": "0"}, 2, "image_size: 0 is not a side in pixels within 16..4096"),
    ({"image_size": "-7"}, 2, "image_size: -7 is not a side in pixels"),
    ({"image_size": "big"}, 2, "an ONNX graph without this project's metadata"),
    ({"class_names": "5"}, 2, "class_names: expected a list of 1..255 names (a uint8 mask holds no more), got 5"),
    ({"class_names": json.dumps({"a": 1})}, 2, "class_names: expected a list of 1..255 names"),
    ({"class_names": json.dumps([1, 2])}, 2, "class_names: expected names of 1..100 characters, got 1"),
    ({}, 300, "its logits have 300 channels for 2 class names"),
])
def test_onnx_metadata_is_checked_before_predict_runs_the_graph(tmp_path, image, metadata, channels, message):
    graph = onnx_graph(tmp_path / "model.onnx", channels, **metadata)
    with pytest.raises(SystemExit) as stop:
        predict.main([str(image), "--model", str(graph), "--out", str(tmp_path / "out")])
    assert str(stop.value).startswith(f"error: --model {graph}: ") and message in str(stop.value)
    assert not (tmp_path / "out" / "photo_mask.png").exists()


def test_a_well_formed_crafted_graph_still_predicts(tmp_path, image):
    """The control: the checks refuse what is wrong, not every graph written by hand."""
    graph = onnx_graph(tmp_path / "model.onnx")
    assert predict.main([str(image), "--model", str(graph), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "photo_mask.png").is_file()
