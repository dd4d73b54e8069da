"""The predict CLI end to end, as a subprocess, with a tiny real U-Net from a checkpoint and from MLflow."""
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import predict
from pipeline.data.imageio import read_rgb
from pipeline.data.palette import colorize, voc_palette
from pipeline.models.checkpoint import load_checkpoint
from pipeline.models.inference import predict_mask
from pipeline.models.segmenter import SegmentationModel
from tests.logged_model import CLASSES, TRAINED_SIZE, log_tiny_model
from tests.team_services import free_port

pytestmark = pytest.mark.slow  # trains models and runs real MLflow stores

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
REGISTERED_NAME = "tiny-unet"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny U-Net (image size 64) as a checkpoint and as the project logs it to MLflow (alias champion). The
    environment variable, which the predict subprocesses read, is restored afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        logged = log_tiny_model(tmp_path_factory.mktemp("model"), REGISTERED_NAME)
        patch.setenv("MLFLOW_TRACKING_URI", logged.tracking_uri)
        yield {"checkpoint": logged.checkpoint, "tracking_uri": logged.tracking_uri}


def run_predict(args, tracking_uri):
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pipeline.predict", *map(str, args)], cwd=REPO, env=env,
                          check=False, capture_output=True, text=True, timeout=120)


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
    assert "2 of 5 images failed" in result.stderr  # every input was tried
    assert "wide.jpg" not in result.stderr
    for stem, (height, width) in sizes.items():
        with Image.open(out / f"{stem}_mask.png") as mask_image:
            assert mask_image.mode == "P" and mask_image.size == (width, height)
            mask = np.asarray(mask_image)
        assert set(np.unique(mask)) <= set(range(len(CLASSES)))
        with Image.open(out / f"{stem}_overlay.png") as overlay:  # the image at the top left, a legend below
            assert overlay.mode == "RGB" and overlay.size[0] >= width and overlay.size[1] > height
            blended = np.asarray(overlay)[:height, :width].astype(int)
        with Image.open(next(tmp_path.glob(f"{stem}.*"))) as source:
            original = np.asarray(source.convert("RGB")).astype(int)
        expected = (original + colorize(mask).astype(int)) / 2  # half image, half mask colour...
        expected[mask == 0] = original[mask == 0]  # ...except background, left as it is
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
    with pytest.raises(SystemExit, match="nope.pt: no such file; neither a checkpoint or ONNX file"):
        predict.main([str(tmp_path / "image.png"), "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path)])


def test_missing_model_is_one_error_line_without_traceback(tmp_path):
    write_images(tmp_path)
    result = run_predict([tmp_path / "wide.jpg", "--model", tmp_path / "gone.pt", "--out", tmp_path / "out"],
                         f"sqlite:///{tmp_path}/unused.db")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "gone.pt" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_model_uri_is_one_error_line(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["tracking_uri"])
    write_images(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(tmp_path / "wide.jpg"), "--model", "models:/no-such-model@champion", "--out", str(tmp_path)])
    message = str(exit_info.value.code)
    assert message.startswith("error: --model models:/no-such-model@champion") and "\n" not in message


def test_runs_from_another_directory_with_a_checkpoint_on_the_cpu(trained, tmp_path):
    write_images(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "pipeline.predict", str(tmp_path / "wide.jpg"), "--model",
                             str(trained["checkpoint"]), "--out", "out", "--device", "cpu"],
                            cwd=elsewhere, env=env, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with Image.open(elsewhere / "out" / "wide_mask.png") as mask:
        assert mask.size == (80, 48)  # relative --out is relative to the working directory


def test_folder_arguments_predict_their_images_only(trained, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    write_images(images)
    Image.new("RGB", (20, 10)).save(images / "UPPER.PNG")
    (images / "notes.txt").write_text("not an image")
    (images / "nested").mkdir()
    Image.new("RGB", (20, 10)).save(images / "nested" / "deep.png")  # folders are not searched recursively
    out = tmp_path / "out"
    assert predict.main([str(images), "--model", str(trained["checkpoint"]), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*_mask.png")) == ["UPPER_mask.png", "grey_mask.png", "tall_mask.png",
                                                             "wide_mask.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no images here")
    with pytest.raises(SystemExit, match=r"error: .*empty.*without image files"):
        predict.main([str(empty), "--model", str(trained["checkpoint"]), "--out", str(out)])


def test_says_what_it_wrote_and_replaces_earlier_results_only_when_asked(trained, tmp_path, capsys):
    write_images(tmp_path)
    out = tmp_path / "out"
    args = [str(tmp_path / "wide.jpg"), str(tmp_path / "tall.jpg"), "--model", str(trained["checkpoint"]),
            "--out", str(out), "--device", "cpu"]
    assert predict.main(args) == 0
    assert capsys.readouterr().out == (f"wrote 2 masks and overlays to {out}: wide_mask.png, wide_overlay.png, "
                                       "tall_mask.png and 1 more\n")
    (out / "wide_mask.png").write_bytes(b"an earlier result")
    (tmp_path / "model.pt").write_text("not a checkpoint: refused before loading it")
    with pytest.raises(SystemExit) as exit_info:
        predict.main([*args[:3], str(tmp_path / "model.pt"), *args[4:]])
    assert exit_info.value.code == (f"error: --out {out}: 4 of the files to write exist already (wide_mask.png, "
                                    "wide_overlay.png, tall_mask.png and 1 more); pass --overwrite to replace them, "
                                    "or choose another --out")
    assert (out / "wide_mask.png").read_bytes() == b"an earlier result"
    assert predict.main([*args, "--overwrite"]) == 0
    assert capsys.readouterr().out.endswith("; 4 of them replaced earlier files\n")
    with Image.open(out / "wide_mask.png") as mask:
        assert mask.size == (80, 48)


def test_image_size_defaults_to_the_checkpoints(trained, tmp_path):
    write_images(tmp_path)
    image = tmp_path / "tall.jpg"
    assert predict.main([str(image), "--model", str(trained["checkpoint"]), "--out", str(tmp_path),
                         "--device", "cpu"]) == 0
    model = load_checkpoint(trained["checkpoint"])
    assert model.image_size == TRAINED_SIZE
    mask = np.asarray(Image.open(tmp_path / "tall_mask.png"))
    assert mask.shape == (70, 33)
    np.testing.assert_array_equal(mask, predict_mask(model, read_rgb(image), image_size=TRAINED_SIZE))


class RedThreshold(torch.nn.Module):
    """Class 1 where the normalised red channel is positive, else class 0: a mask with both, known in advance."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # inference finds the device from the parameters

    def forward(self, images):
        red = images[:, :1]
        return torch.cat([-red, red, torch.full_like(red, -100.0)], dim=1)


def test_overlay_keeps_background_pixels_and_adds_a_legend(tmp_path):
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    photo[:, :30, 0] = rng.integers(0, 40, (40, 30))  # dark red on the left: background
    photo[:, 30:, 0] = rng.integers(220, 256, (40, 30))  # bright red on the right: class 1
    Image.fromarray(photo).save(tmp_path / "photo.png")
    model = SegmentationModel(RedThreshold(), CLASSES, TRAINED_SIZE)
    written, errors = predict.predict_files(model, [tmp_path / "photo.png"], tmp_path / "out")
    assert errors == [] and [path.name for path in written] == ["photo_mask.png", "photo_overlay.png"]
    mask = np.asarray(Image.open(tmp_path / "out" / "photo_mask.png"))
    assert (mask[:, :25] == 0).all() and (mask[:, 35:] == 1).all()
    shown = np.asarray(Image.open(tmp_path / "out" / "photo_overlay.png").convert("RGB"))
    picture, strip = shown[:40, :60], shown[40:]
    np.testing.assert_array_equal(picture[mask == 0], photo[mask == 0])
    expected = (photo.astype(int) + colorize(mask).astype(int)) / 2
    assert np.abs(picture[mask == 1].astype(int) - expected[mask == 1]).max() <= 1
    assert strip.shape[0] >= 12  # a legend strip below the image...
    assert (strip == voc_palette()[1]).all(axis=-1).any()  # ...with the swatch of 'circle'
    assert (strip.sum(axis=-1) < 200).any()  # ...and dark text beside it


def test_class_zero_is_background_only_when_named_so():
    image = np.full((4, 4, 3), 200, dtype=np.uint8)
    mask = np.zeros((4, 4), dtype=np.uint8)
    assert predict.background_index(["_background_", "cat"]) == 0
    assert predict.background_index(["building", "road"]) is None
    np.testing.assert_array_equal(predict.overlay(image, mask, predict.background_index(CLASSES)), image)
    blended = predict.overlay(image, mask, predict.background_index(["building", "road"]))
    assert (blended == 100).all()  # class 0 is a real class here: coloured (black in the VOC palette) like any other


def test_project_store_is_used_for_model_uris_from_any_directory(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text("mlflow:\n  tracking_uri: sqlite:///mlflow.db\n")
    monkeypatch.setattr(predict, "PROJECT_ROOT", project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    previous = mlflow.get_tracking_uri()
    try:
        predict.use_project_store(str(project / "model.pt"))  # a file: MLflow is not involved
        assert mlflow.get_tracking_uri() == previous
        predict.use_project_store("models:/segmentation@champion")
        assert mlflow.get_tracking_uri() == f"sqlite:///{project}/mlflow.db"
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.mark.parametrize("flag, value, message", [
    ("--out", "taken", "error: --out {tmp}/taken: is a file; --out names a folder (made if missing) for the masks and "
                       "overlays"),
    ("--out", "taken/masks", "error: --out {tmp}/taken/masks: is inside {tmp}/taken, a file; --out names a folder "
                             "(made if missing) for the masks and overlays"),
    ("--image-size", "100000", "error: --image-size 100000 is not a side in pixels within 16..4096 (as "
                               "data.image_size)"),
])
def test_a_bad_out_or_image_size_is_one_line_before_the_model_loads(tmp_path, flag, value, message):
    write_images(tmp_path)
    (tmp_path / "taken").write_text("an earlier result, not a folder")
    (tmp_path / "model.pt").write_text("not a checkpoint: loading it first would fail on it instead")
    args = {"--out": str(tmp_path / "out"), flag: str(tmp_path / value) if flag == "--out" else value}
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(tmp_path / "wide.jpg"), "--model", str(tmp_path / "model.pt"),
                      *(part for pair in args.items() for part in pair)])
    assert exit_info.value.code == message.format(tmp=tmp_path)
    assert (tmp_path / "taken").read_text() == "an earlier result, not a folder"


def test_a_missing_alias_or_an_unreachable_server_is_the_first_thing_said(tmp_path, monkeypatch):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.MlflowClient(store).create_registered_model("segmentation-x-2cls")
    write_images(tmp_path)
    unreachable = f"http://127.0.0.1:{free_port()}"
    expected = {store: "error: --model models:/segmentation-x-2cls@nope: Registered model alias nope not found.",
                unreachable: f"error: --model MLFLOW_TRACKING_URI: the MLflow server {unreachable} cannot be "
                             "reached ([Errno 111] Connection refused); start it, or point MLFLOW_TRACKING_URI at one "
                             "that runs"}
    previous = mlflow.get_tracking_uri()
    try:
        for uri, message in expected.items():
            monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
            mlflow.set_tracking_uri(uri)
            with pytest.raises(SystemExit) as exit_info:
                predict.main([str(tmp_path / "wide.jpg"), "--model", "models:/segmentation-x-2cls@nope",
                              "--out", str(tmp_path / "out")])
            assert exit_info.value.code == message
    finally:
        mlflow.set_tracking_uri(previous)
