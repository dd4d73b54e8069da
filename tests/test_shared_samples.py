"""The readers on the real samples in ../shared/data: the class values and sizes their SOURCE.txt files state."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.imageio import open_image
from pipeline.data.interim import check_mask, read_classes, read_samples, write_interim
from pipeline.data.labels import IGNORE_INDEX
from pipeline.data.sources.ade20k import read_ade20k
from pipeline.data.sources.single_class import binary_foreground, read_single_class
from pipeline.data.sources.voc import VOC_CLASSES, read_voc_layout, voc_root

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
if not SHARED.is_dir():
    pytest.skip(f"{SHARED} is absent: the real samples live outside the repo", allow_module_level=True)


def values(mask: np.ndarray) -> set[int]:
    return set(np.unique(mask).tolist())


def test_voc_sample_masks_hold_the_stated_classes():
    source = read_voc_layout(voc_root(SHARED / "voc2012_sample"), VOC_CLASSES, split_files={"train": "train.txt"})
    expected = {"2011_000003": ((338, 500), {0, 5, 15, 255}), "2011_000006": ((375, 500), {0, 9, 15, 18, 255}),
                "2011_000025": ((375, 500), {0, 6, 7, 255})}
    assert {sample.id for sample in source.samples} == set(expected)
    for sample in source.samples:
        mask = source.decode_mask(sample)
        size, classes = expected[sample.id]
        assert mask.shape == size and values(mask) == classes, sample.id
        check_mask(mask, sample, len(VOC_CLASSES), open_image(sample.image_path).size[::-1])


def test_ade20k_sample_reduces_zero_label():
    source = read_ade20k(SHARED / "ade20k_sample")
    assert len(source.classes) == 150 and source.classes[:3] == ["wall", "building", "sky"]
    assert source.classes[-1] == "flag"
    raw = {"ADE_val_00000001": ((512, 683), {0, 1, 2, 3, 5, 7, 10, 18}),
           "ADE_val_00000002": ((364, 500), {0, 1, 2, 3, 5, 14, 18}),
           "ADE_val_00000003": ((300, 400), {0, 1, 2, 3, 5, 7, 12, 21, 44, 81, 88, 97, 103})}
    assert {(s.id, s.split) for s in source.samples} == {(name, "val") for name in raw}
    for sample in source.samples:
        mask = source.decode_mask(sample)
        size, stored = raw[sample.id]
        assert mask.shape == size and open_image(sample.image_path).size[::-1] == size
        assert values(mask) == {IGNORE_INDEX if v == 0 else v - 1 for v in stored}, sample.id


def test_isbi_labels_are_membrane_zero_cell_255():
    labels = sorted((SHARED / "isbi2012_membrane" / "label").glob("*.png"))
    assert len(labels) == 30
    for path in labels[:5]:
        label = np.asarray(Image.open(path))
        assert label.shape == (512, 512) and values(label) == {0, 255}
        assert (label == 0).mean() < 0.5  # membranes are thin: 0 is the minority, so it is the membrane


def test_drive_masks_decode_the_same_in_both_encodings():
    drive = SHARED / "drive" / "DRIVE" / "test"
    first, second = drive / "1st_manual" / "01_manual1.gif", drive / "2nd_manual" / "01_manual2.gif"
    assert Image.open(first).mode == "L" and values(np.asarray(Image.open(first))) == {0, 255}
    assert Image.open(second).mode == "P" and values(np.asarray(Image.open(second))) == {0, 1}
    vessels_1, vessels_2 = binary_foreground(first), binary_foreground(second)
    assert vessels_1.shape == vessels_2.shape == (584, 565)
    assert 0.05 < vessels_2.mean() < 0.2
    assert (vessels_1 & vessels_2).sum() > 0.7 * vessels_2.sum()  # two observers, mostly the same vessels


def test_epfl_masks_binarise_anti_aliased_la_and_rgba():
    masks = sorted((SHARED / "epfl_mitochondria").glob("*/mitochondrion/*.png"))
    assert len(masks) == 32
    assert {Image.open(path).mode for path in masks} == {"LA", "RGBA"}
    for path in masks:
        grey = np.asarray(Image.open(path).convert("L"))
        foreground = binary_foreground(path)
        assert foreground.shape == (768, 1024)
        assert np.array_equal(foreground, grey > 127), path.name
        assert 0.03 < foreground.mean() < 0.12, path.name


def test_make_single_class_root_builds_a_root_the_reader_and_merge_accept(tmp_path: Path):
    root = tmp_path / "single_class"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_single_class_root.py"), str(SHARED), str(root)],
                   check=True, capture_output=True)
    assert (root / "vessel" / "masks" / "21_training.gif").is_symlink()
    assert not (root / "membrane" / "masks" / "0.png").is_symlink()  # rewritten: inverted
    table = write_interim(read_single_class(root, val_fraction=0.2, seed=0), tmp_path / "interim")
    assert read_classes(tmp_path / "interim") == ["background", "membrane", "mitochondrion", "vessel"]
    table["class"] = table["id"].str.split("__").str[0]
    counts = table.groupby(["class", "split"]).size().to_dict()
    assert counts == {("membrane", "train"): 24, ("membrane", "val"): 6, ("mitochondrion", "train"): 27,
                      ("mitochondrion", "val"): 5, ("vessel", "train"): 16, ("vessel", "val"): 4}
    assert dict(zip(table["class"], table["labelled"])) == {"membrane": "0;1", "mitochondrion": "0;2",
                                                            "vessel": "0;3"}
    membrane = read_samples(tmp_path / "interim").query("id == 'membrane__0'").iloc[0]
    mask = np.asarray(Image.open(tmp_path / "interim" / membrane["mask"]))
    raw = np.asarray(Image.open(SHARED / "isbi2012_membrane" / "label" / "0.png"))
    assert np.array_equal(mask, np.where(raw == 0, 1, 0))  # the membrane (0 in ISBI) is class 1
