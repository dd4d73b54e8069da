"""What training/setup.py builds from params, on a tiny generated dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Params, parse
from pipeline.data.dataset import read_manifest
from pipeline.data.sources import synthetic
from pipeline.training.setup import balanced_class_weights, build_data
from tests.synthetic_data import processed_synthetic


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    return processed_synthetic(tmp_path_factory.mktemp("data"), num_train=6, num_val=2, seed=5)


def test_several_random_crops_of_each_image_per_epoch(processed: Path):
    params = parse(Params, {"data": {"image_size": 64}, "augment": {"crop_size": 32, "crops_per_image": 3},
                            "train": {"batch_size": 2}}, "")
    data = build_data(params, processed, read_manifest(processed))
    assert len(data.train_loader.dataset) == 18 and data.num_train == 6
    images, masks, _ = next(iter(data.train_loader))
    assert images.shape[-2:] == (32, 32) and masks.shape[-2:] == (32, 32)
    assert len(data.val_loader.dataset) == 2  # validation sees each whole image once


@pytest.mark.parametrize("crop_size", [0, 64, 192])
def test_a_crop_as_large_as_the_image_trains_on_whole_images(processed: Path, crop_size: int):
    """The default 192-px crop on 64² arrays (or crop 0) draws each whole image `crops_per_image` times."""
    params = parse(Params, {"data": {"image_size": 64}, "augment": {"crop_size": crop_size, "crops_per_image": 2},
                            "train": {"batch_size": 3}}, "")
    data = build_data(params, processed, read_manifest(processed))
    assert len(data.train_loader.dataset) == 12
    images, masks, _ = next(iter(data.train_loader))
    assert images.shape[-2:] == (64, 64) and masks.shape[-2:] == (64, 64)


def test_balanced_weights_favour_rare_classes(processed: Path):
    params = parse(Params, {"data": {"image_size": 64}}, "")
    dataset = build_data(params, processed, read_manifest(processed)).train_loader.dataset
    weights = np.array(balanced_class_weights(dataset, len(synthetic.CLASSES)))
    masks = np.asarray(dataset.masks)
    counts = np.bincount(masks[masks != 255].ravel(), minlength=len(weights))
    seen = counts > 0
    assert weights[np.argmax(counts)] < 1 < weights[seen].max()  # background down, the rarest shape up
    assert np.all(np.diff(weights[seen][np.argsort(counts[seen])]) <= 1e-9)  # rarer never weighs less
