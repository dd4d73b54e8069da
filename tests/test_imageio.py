"""Images are read as displayed (EXIF orientation applied) and a decompression bomb is a named, skippable bad sample."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.imageio import BadSampleError, read_rgb
from pipeline.data.interim import write_interim
from pipeline.data.preprocess import preprocess
from pipeline.data.sources.voc import read_custom_voc

EXIF_ORIENTATION = 0x0112
ROTATED_90_CW = 6  # "rotate 90 clockwise to display"


def camera_jpeg(path: Path) -> np.ndarray:
    """A 40x20 (WxH) JPEG stored sideways with an orientation tag, as phones write it; returns the displayed
    image: 20 wide, 40 high, red on top."""
    displayed = np.zeros((40, 20, 3), dtype=np.uint8)
    displayed[:20] = (255, 0, 0)
    stored = Image.fromarray(displayed).rotate(90, expand=True)  # what the sensor wrote
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATED_90_CW
    stored.save(path, quality=95, exif=exif)
    return displayed


def test_a_rotated_camera_jpeg_is_read_as_displayed(tmp_path: Path):
    displayed = camera_jpeg(tmp_path / "photo.jpg")
    image = read_rgb(tmp_path / "photo.jpg")
    assert image.shape == displayed.shape
    assert image[5, 10, 0] > 200 and image[35, 10, 0] < 50  # red on top, as shown


def voc_folder(root: Path, image_writer) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True)
    for name, split in (("a", "train"), ("b", "val")):
        image_writer(voc / "JPEGImages" / f"{name}.jpg")
        mask = np.zeros((40, 20), dtype=np.uint8)
        mask[20:] = 1
        Image.fromarray(mask, mode="L").save(voc / "SegmentationClass" / f"{name}.png")
        (voc / "ImageSets/Segmentation" / f"{split}.txt").write_text(f"{name}\n")
    (root / "classes.txt").write_text("background\nthing\n")
    return root


def test_merge_keeps_a_rotated_jpeg_aligned_with_its_mask(tmp_path: Path):
    root = voc_folder(tmp_path / "voc", camera_jpeg)
    table = write_interim(read_custom_voc(root, None), tmp_path / "interim")
    assert table[["height", "width"]].values.tolist() == [[40, 20], [40, 20]]
    preprocess(tmp_path / "interim", tmp_path / "processed", 32)
    image = np.load(tmp_path / "processed" / "train_images.npy")[0]
    mask = np.load(tmp_path / "processed" / "train_masks.npy")[0]
    assert image[4, 16, 0] > 200 and mask[4, 16] == 0 and mask[28, 16] == 1  # red top is the background half


def test_a_decompression_bomb_is_named_and_skipped_under_skip(tmp_path: Path, monkeypatch):
    root = voc_folder(tmp_path / "voc", lambda path: Image.new("RGB", (20, 40)).save(path))
    voc = root / "VOCdevkit" / "VOC2012"
    Image.new("RGB", (100, 50)).save(voc / "JPEGImages" / "bomb.jpg")
    Image.new("L", (100, 50)).save(voc / "SegmentationClass" / "bomb.png")
    (voc / "ImageSets/Segmentation/train.txt").write_text("a\nbomb\n")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL refuses twice this: 5000 pixels is a "bomb"
    with pytest.raises(BadSampleError, match=r"JPEGImages/bomb\.jpg: cannot read image"):
        write_interim(read_custom_voc(root, None), tmp_path / "interim")
    table = write_interim(read_custom_voc(root, None), tmp_path / "interim", on_bad_sample="skip")
    assert sorted(table["id"]) == ["a", "b"]
    assert "bomb.jpg" in (tmp_path / "interim" / "skipped.json").read_text()
