"""Every figure is written as a real, non-blank image of a sensible size, also for 150 classes."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pipeline.reporting import plots

torch.set_num_threads(1)
FEW = ["background", "circle", "square", "triangle", "star", "ring"]
MANY = [f"ade20k class {index}" for index in range(150)]


def assert_readable(path, max_side=6000):
    """Opens, is between 300 and `max_side` pixels a side, is not one flat colour, left no temp file."""
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert 300 <= width <= max_side and 300 <= height <= max_side, (path.name, image.size)
    assert pixels.std() > 0, f"{path.name} is blank"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
    return width, height


def fake_masks(count, num_classes, seed=0, size=(40, 60)):
    rng = np.random.default_rng(seed)
    masks = rng.integers(0, num_classes, (count, *size)).astype(np.uint8)
    masks[:, :2] = 255
    return list(masks)


def fake_images(count, size=(40, 60)):
    return list(np.random.default_rng(1).integers(0, 256, (count, *size, 3), dtype=np.uint8))


@pytest.mark.parametrize("names", [FEW, MANY], ids=["6", "150"])
def test_per_class_iou_grows_with_the_class_count(names, tmp_path):
    values = {name: index / len(names) for index, name in enumerate(names)}
    values[names[1]] = float("nan")
    plots.plot_per_class_iou(values, tmp_path / "iou.png")
    _, height = assert_readable(tmp_path / "iou.png")
    assert height > 20 * len(names)  # at least 20 px per bar: names never overlap


def test_per_class_iou_with_every_class_absent_still_draws(tmp_path):
    plots.plot_per_class_iou({name: math.nan for name in FEW}, tmp_path / "iou.png")
    assert_readable(tmp_path / "iou.png")


@pytest.mark.parametrize("names", [FEW, MANY], ids=["6", "150"])
def test_sample_predictions(names, tmp_path):
    truths = fake_masks(3, len(names))
    plots.plot_sample_predictions(fake_images(3), truths, fake_masks(3, len(names), seed=2), names,
                                  tmp_path / "samples.png")
    assert_readable(tmp_path / "samples.png")


def test_sample_predictions_refuses_mismatched_lists(tmp_path):
    with pytest.raises(ValueError, match="as many"):
        plots.plot_sample_predictions(fake_images(2), fake_masks(1, 6), fake_masks(2, 6), FEW, tmp_path / "s.png")


@pytest.mark.parametrize("epochs", [1, 12])
def test_training_history(epochs, tmp_path):
    epoch = np.arange(1, epochs + 1)
    history = pd.DataFrame({"epoch": epoch, "train_loss": 1 / epoch, "val_loss": 1.2 / epoch,
                            "val_miou": 0.5 - 0.4 / epoch, "val_pixel_accuracy": 0.9 - 0.4 / epoch,
                            "lr": 1e-3 * 0.9 ** epoch})
    plots.plot_training_history(history, tmp_path / "history.png")
    assert_readable(tmp_path / "history.png")


def test_training_history_names_missing_columns(tmp_path):
    with pytest.raises(ValueError, match="lr"):
        plots.plot_training_history(pd.DataFrame({"epoch": [1], "train_loss": [1.0], "val_loss": [1.0],
                                                  "val_miou": [0.1], "val_pixel_accuracy": [0.5]}),
                                    tmp_path / "history.png")


@pytest.mark.parametrize("names", [FEW, MANY], ids=["6", "150"])
def test_confusion_matrix_with_an_absent_class(names, tmp_path):
    confusion = np.random.default_rng(0).integers(0, 20, (len(names), len(names))) + 100 * np.eye(len(names), dtype=int)
    confusion[2] = 0  # class 2 never in the truth: a grey row, not a division by zero
    plots.plot_confusion_matrix(confusion, names, tmp_path / "confusion.png")
    assert_readable(tmp_path / "confusion.png")


def test_progress_gif_has_one_frame_per_snapshot(tmp_path):
    snapshots = [(epoch, fake_masks(2, len(FEW), seed=epoch)) for epoch in (1, 3, 5)]
    plots.save_progress_gif(fake_images(2), snapshots, FEW, tmp_path / "progress.gif")
    assert_readable(tmp_path / "progress.gif")
    with Image.open(tmp_path / "progress.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == len(snapshots)
        sizes = set()
        for frame in range(gif.n_frames):
            gif.seek(frame)
            sizes.add(gif.size)
            assert np.asarray(gif.convert("RGB")).std() > 0
    assert len(sizes) == 1
