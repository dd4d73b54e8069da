"""The model as MLflow users get it: logged as "models from code" with safetensors weights, loaded by
mlflow.pyfunc with pickle deserialization switched off, served by `mlflow models serve`, and the same masks
as the predict CLI."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from pipeline.models.checkpoint import load_checkpoint, load_model
from pipeline.models.inference import predict_mask
from pipeline.models.onnx_graph import load_onnx
from pipeline.models.segmenter import SegmentationModel
from tests.logged_model import CLASSES, LoggedModel, log_tiny_model

pytestmark = pytest.mark.slow  # creates an MLflow store; serves a model

SERVE_START_S = 120


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> LoggedModel:
    return log_tiny_model(tmp_path_factory.mktemp("store"), "tiny-segmenter")


@pytest.fixture(autouse=True)
def no_pickles(logged, monkeypatch):
    """MLflow refuses to unpickle anything (its default is to allow it) and looks in the test store."""
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    mlflow.set_tracking_uri(logged.tracking_uri)


def uint8_images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (2, 48, 80, 3), dtype=np.uint8)


def as_batch(images: np.ndarray) -> np.ndarray:
    """The pyfunc's input: (N, 3, H, W) float32 RGB in [0, 1]."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32) / 255


def cli_masks(logged: LoggedModel, images: np.ndarray) -> np.ndarray:
    model = load_checkpoint(logged.checkpoint)
    return np.stack([predict_mask(model, image) for image in images]).astype(np.int64)


def test_pyfunc_predicts_the_masks_the_predict_cli_writes(logged):
    images = uint8_images()
    model = mlflow.pyfunc.load_model(logged.registered)
    masks = model.predict(as_batch(images))
    assert masks.dtype == np.int64 and masks.shape == (2, 48, 80)
    np.testing.assert_array_equal(masks, cli_masks(logged, images))
    assert model.predict(np.zeros((1, 3, 17, 9), dtype=np.float32)).shape == (1, 17, 9)  # any size


def test_the_torch_module_comes_back_from_either_loader(logged):
    expected = load_checkpoint(logged.checkpoint).state_dict()
    for source in (logged.registered, logged.run_model, str(logged.folder)):
        module = load_model(source)
        assert isinstance(module, SegmentationModel) and module.class_names == CLASSES
        assert all((module.state_dict()[name] == value).all() for name, value in expected.items())
    unwrapped = mlflow.pyfunc.load_model(logged.registered).unwrap_python_model().model
    assert isinstance(unwrapped, SegmentationModel) and unwrapped.state_dict().keys() == expected.keys()


def test_the_logged_onnx_graph_gives_the_cli_masks_from_every_kind_of_source(logged):
    images = uint8_images()
    for source in (logged.registered, logged.run_model, str(logged.folder)):
        graph = load_onnx(source)
        assert graph.class_names == CLASSES
        np.testing.assert_array_equal(np.stack([predict_mask(graph, image) for image in images]),
                                      cli_masks(logged, images))


def test_the_logged_model_holds_no_pickle(logged):
    files = {path.relative_to(logged.folder).as_posix() for path in logged.folder.rglob("*") if path.is_file()}
    assert {"artifacts/model.safetensors", "artifacts/model.onnx", "pyfunc.py"} <= files
    assert not [name for name in files if name.endswith((".pkl", ".pt", ".pth", ".pyc"))]
    flavor = yaml.safe_load((logged.folder / "MLmodel").read_text())["flavors"]
    assert list(flavor) == ["python_function"] and "python_model" not in flavor["python_function"]
    signature = json.loads(yaml.safe_load((logged.folder / "MLmodel").read_text())["signature"]["inputs"])
    assert signature[0]["tensor-spec"] == {"dtype": "float32", "shape": [-1, 3, -1, -1]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + SERVE_START_S
    while time.time() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow models serve did not come up (exit code {server.poll()}):\n{log.read_text()[-3000:]}")


def test_mlflow_models_serve_answers_invocations_with_the_cli_masks(logged, tmp_path):
    port = free_port()
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    # mlflow models serve execs `uvicorn` from PATH: this interpreter's, even when its venv is not activated
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": logged.tracking_uri, "OMP_NUM_THREADS": "1",
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", logged.registered,
                               "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port), "--workers", "1"],
                              cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", server, log_path)
        images = uint8_images()
        answer = post_json(f"http://127.0.0.1:{port}/invocations", {"inputs": as_batch(images).tolist()})
        np.testing.assert_array_equal(np.array(answer["predictions"]), cli_masks(logged, images))
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
