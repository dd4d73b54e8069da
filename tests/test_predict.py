"""The predict CLI end to end, as a subprocess, with a tiny real U-Net from a checkpoint and from MLflow."""
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

from pipeline import predict
from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.data.imageio import read_rgb
from pipeline.data.palette import colorize
from pipeline.inference import predict_mask
from pipeline.models import build_model

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
CLASSES = ["background", "circle", "square"]
UNET_PARAMS = {"base_channels": 4, "depth": 2, "bilinear": True, "dropout": 0.0}
REGISTERED_NAME = "tiny-unet"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny U-Net saved as a checkpoint and logged + registered (alias champion) in a sqlite MLflow store.
    The store is set explicitly (an earlier set_tracking_uri in this process would win over the environment);
    the environment variable, which the predict subprocesses read, is restored afterwards."""
    root = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = build_model("unet", CLASSES, UNET_PARAMS).eval()
    checkpoint = root / "model.pt"
    save_checkpoint(checkpoint, model, "unet", UNET_PARAMS)
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        mlflow.set_tracking_uri(tracking_uri)
        experiment = mlflow.create_experiment("predict-test", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pytorch.log_model(model, name="model", serialization_format="pickle",
                                            code_paths=[str(REPO / "pipeline")], pip_requirements=["torch"],
                                            registered_model_name=REGISTERED_NAME)
        MlflowClient().set_registered_model_alias(REGISTERED_NAME, "champion", info.registered_model_version)
        yield {"checkpoint": checkpoint, "tracking_uri": tracking_uri}


def run_predict(args, tracking_uri):
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pipeline.predict", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def write_images(directory: Path) -> dict[str, tuple[int, int]]:
    """Images of different sizes and modes; returns stem -> (height, width)."""
    rng = np.random.default_rng(0)
    sizes = {"wide": (48, 80), "tall": (70, 33), "grey": (64, 64)}
    for stem, (height, width) in sizes.items():
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert("L" if stem == "grey" else "RGB")
        image.save(directory / f"{stem}.{'png' if stem == 'grey' else 'jpg'}")
    return sizes


def test_checkpoint_masks_at_original_size_and_bad_inputs_reported_by_name(trained, tmp_path):
    sizes = write_images(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    inputs = [tmp_path / "wide.jpg", tmp_path / "missing.png", tmp_path / "tall.jpg", tmp_path / "broken.png",
              tmp_path / "grey.png"]
    out = tmp_path / "out"
    result = run_predict([*inputs, "--model", trained["checkpoint"], "--out", out, "--image-size", "32"],
                         trained["tracking_uri"])
    assert result.returncode == 1, result.stderr
    assert "missing.png" in result.stderr and "broken.png" in result.stderr
    assert "5/5" in result.stderr  # the progress bar went through every input
    assert "wide.jpg" not in result.stderr
    for stem, (height, width) in sizes.items():
        with Image.open(out / f"{stem}_mask.png") as mask_image:
            assert mask_image.mode == "P" and mask_image.size == (width, height)
            mask = np.asarray(mask_image)
        assert set(np.unique(mask)) <= set(range(len(CLASSES)))
        with Image.open(out / f"{stem}_overlay.png") as overlay:
            assert overlay.mode == "RGB" and overlay.size == (width, height)
            blended = np.asarray(overlay).astype(int)
        with Image.open(next(tmp_path.glob(f"{stem}.*"))) as source:
            original = np.asarray(source.convert("RGB")).astype(int)
        expected = (original + colorize(mask).astype(int)) / 2  # half image, half mask colour
        assert np.abs(blended - expected).max() <= 1
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{stem}_{kind}.png" for stem in sizes
                                                           for kind in ("mask", "overlay"))


def test_registered_mlflow_model_gives_the_same_masks_as_the_checkpoint(trained, tmp_path):
    write_images(tmp_path)
    image = tmp_path / "wide.jpg"
    result = run_predict([image, "--model", f"models:/{REGISTERED_NAME}@champion", "--out", tmp_path,
                          "--image-size", "32"], trained["tracking_uri"])
    assert result.returncode == 0, result.stderr
    expected = predict_mask(load_checkpoint(trained["checkpoint"]), read_rgb(image), image_size=32)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "wide_mask.png")), expected)


def test_unknown_model_source_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="nope.pt.*neither a checkpoint file"):
        predict.main([str(tmp_path / "image.png"), "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path)])
