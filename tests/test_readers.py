"""Every reader on small data it builds itself in each layout, run through `write_interim` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.config import DataParams, parse
from pipeline.data.imageio import BadSampleError
from pipeline.data.interim import read_classes, read_samples, write_interim
from pipeline.data.palette import flat_palette
from pipeline.data.preprocess import preprocess
from pipeline.data.sources import raw, read_source
from pipeline.data.sources.ade20k import read_ade20k
from pipeline.data.sources.folder import read_folder
from pipeline.data.sources.single_class import read_single_class
from pipeline.data.sources.voc import VOC_CLASSES, read_custom_voc, read_voc2012
from pipeline.errors import UserError
from pipeline.training.start import report_unseen_classes
from tests import own_data

HEIGHT, WIDTH = 12, 16


def save_photo(path: Path, size: tuple[int, int] = (WIDTH, HEIGHT)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(str(path))).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def save_mask(path: Path, image: Image.Image, format: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=format)


def palette_mask(values: np.ndarray) -> Image.Image:
    image = Image.fromarray(values.astype(np.uint8), mode="P")
    image.putpalette(flat_palette())
    return image


def class_map(*values: int) -> np.ndarray:
    """HEIGHT x WIDTH mask with one vertical band per value."""
    bands = np.array_split(np.arange(WIDTH), len(values))
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    for band, value in zip(bands, values):
        mask[:, band] = value
    return mask


def write_voc(root: Path, splits: dict[str, dict[str, Image.Image]], mask_dir: str = "SegmentationClass",
              list_names: dict[str, str] | None = None) -> None:
    """A VOC-layout root: one JPEG per id, its mask under `mask_dir`, one split list per split."""
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    for split, masks in splits.items():
        for sample_id, mask in masks.items():
            save_photo(root / "JPEGImages" / f"{sample_id}.jpg", mask.size)
            save_mask(root / mask_dir / f"{sample_id}.png", mask)
        (lists / (list_names or {}).get(split, f"{split}.txt")).write_text("\n".join(masks) + "\n")


def interim_masks(out: Path) -> dict[str, np.ndarray]:
    return {row.id: np.asarray(Image.open(out / row.mask)) for row in read_samples(out).itertuples()}


# --- VOC 2012 ------------------------------------------------------------------------------------------

@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    root = tmp_path / "raw" / "VOCdevkit" / "VOC2012"
    write_voc(root, {"train": {"2007_000001": palette_mask(class_map(0, 15, 255)),
                               "2007_000002": palette_mask(class_map(0, 20))},
                     "val": {"2007_000003": palette_mask(class_map(0, 1, 255))}})
    return root


def test_voc2012_keeps_class_indices_and_official_splits(voc_root: Path, tmp_path: Path):
    source = read_voc2012(voc_root.parents[1], trainaug=False)  # the folder the tar was unpacked into
    table = write_interim(source, tmp_path / "interim")
    assert read_classes(tmp_path / "interim") == VOC_CLASSES and len(VOC_CLASSES) == 21
    assert dict(zip(table["id"], table["split"])) == {"2007_000001": "train", "2007_000002": "train",
                                                      "2007_000003": "val"}
    masks = interim_masks(tmp_path / "interim")
    assert np.array_equal(masks["2007_000001"], class_map(0, 15, 255))
    assert np.array_equal(masks["2007_000003"], class_map(0, 1, 255))


def test_voc2012_trainaug_trains_on_sbd_masks_and_keeps_official_val(voc_root: Path, tmp_path: Path):
    sbd_masks = {"2008_000010": Image.fromarray(class_map(0, 7)), "2007_000001": Image.fromarray(class_map(0, 12))}
    write_voc(voc_root, {"train": sbd_masks}, mask_dir="SegmentationClassAug", list_names={"train": "trainaug.txt"})
    # DeepLab writes the list as path pairs; only the id matters
    (voc_root / "ImageSets/Segmentation/trainaug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in sbd_masks))
    table = write_interim(read_voc2012(voc_root, trainaug=True), tmp_path / "interim")
    assert sorted(table.loc[table["split"] == "train", "id"]) == ["2007_000001", "2008_000010"]
    assert list(table.loc[table["split"] == "val", "id"]) == ["2007_000003"]
    masks = interim_masks(tmp_path / "interim")
    assert np.array_equal(masks["2007_000001"], class_map(0, 12))  # the SegmentationClassAug version
    assert np.array_equal(masks["2007_000003"], class_map(0, 1, 255))


def test_voc2012_trainaug_without_sbd_files_says_what_is_missing(voc_root: Path):
    with pytest.raises(FileNotFoundError, match="SegmentationClassAug.*trainaug.txt"):
        read_voc2012(voc_root, trainaug=True)


def test_voc2012_trainaug_list_must_exclude_val(voc_root: Path):
    write_voc(voc_root, {"train": {"2007_000003": Image.fromarray(class_map(0, 1))}},
              mask_dir="SegmentationClassAug", list_names={"train": "trainaug.txt"})
    with pytest.raises(ValueError, match="2007_000003"):
        read_voc2012(voc_root, trainaug=True)


# --- custom VOC layout ---------------------------------------------------------------------------------

def write_custom(root: Path, masks: dict[str, dict[str, Image.Image]], classes: list[str] | None) -> Path:
    write_voc(root, masks)
    if classes is not None:
        (root / "classes.txt").write_text("\n".join(classes) + "\n\n")
    return root


def two_samples(train_mask: Image.Image) -> dict[str, dict[str, Image.Image]]:
    return {"train": {"a": train_mask}, "val": {"b": Image.fromarray(class_map(0, 2))}}


def test_custom_voc_takes_names_from_classes_txt(tmp_path: Path):
    root = write_custom(tmp_path / "mine", two_samples(palette_mask(class_map(0, 1, 255))), ["bg", "leaf", "bug"])
    write_interim(read_custom_voc(root, None), tmp_path / "interim")
    assert read_classes(tmp_path / "interim") == ["bg", "leaf", "bug"]
    assert np.array_equal(interim_masks(tmp_path / "interim")["a"], class_map(0, 1, 255))


def test_custom_voc_finds_classes_txt_beside_vocdevkit(tmp_path: Path):
    """data.root may be the folder holding VOCdevkit/ with classes.txt next to it, as MSRC-v2 ships."""
    write_voc(tmp_path / "release" / "VOCdevkit" / "VOC2012", two_samples(palette_mask(class_map(0, 1))))
    (tmp_path / "release" / "classes.txt").write_text("bg\nleaf\nbug\n")
    write_interim(read_custom_voc(tmp_path / "release", None), tmp_path / "interim")
    assert read_classes(tmp_path / "interim") == ["bg", "leaf", "bug"]


def test_two_differing_classes_txt_are_an_error_naming_both(tmp_path: Path):
    """Either could be the one the masks were made with: neither silently wins."""
    inner = tmp_path / "release" / "VOCdevkit" / "VOC2012"
    write_voc(inner, two_samples(palette_mask(class_map(0, 1))))
    (inner / "classes.txt").write_text("bg\nleaf\nbug\n")
    (tmp_path / "release" / "classes.txt").write_text("bg\nleaf\n")
    with pytest.raises(UserError) as error:
        read_custom_voc(tmp_path / "release", None)
    assert str(error.value) == (f"{inner / 'classes.txt'} and {tmp_path / 'release' / 'classes.txt'} list different "
                                "classes (3 and 2 names, first difference on line 3); keep one of them")
    (tmp_path / "release" / "classes.txt").write_text("bg\nleaf\nbug\n\n")  # the same names: either will do
    assert read_custom_voc(tmp_path / "release", None).classes == ["bg", "leaf", "bug"]


def test_val_classes_absent_from_training_are_in_the_manifest_and_the_train_log(tmp_path: Path, caplog):
    root = write_custom(tmp_path / "mine", two_samples(palette_mask(class_map(0, 1, 255))), ["bg", "leaf", "bug"])
    write_interim(read_custom_voc(root, None), tmp_path / "interim")
    preprocess(tmp_path / "interim", tmp_path / "processed", 16)
    manifest = json.loads((tmp_path / "processed" / "manifest.json").read_text())
    assert manifest["val_classes_not_in_train"] == ["bug"]  # val shows bg and bug; train bg and leaf
    report_unseen_classes(manifest, tmp_path / "processed")
    assert caplog.messages == [f"val classes that no training mask in {tmp_path / 'processed'} shows: bug; their IoU "
                               "can only be 0"]


def test_custom_voc_takes_names_from_argument_and_accepts_png_images(tmp_path: Path):
    root = write_custom(tmp_path / "mine", two_samples(Image.fromarray(class_map(0, 1))), None)
    jpeg = root / "JPEGImages" / "a.jpg"
    Image.open(jpeg).save(jpeg.with_suffix(".png"))
    jpeg.unlink()
    table = write_interim(read_custom_voc(root, ["bg", "leaf", "bug"]), tmp_path / "interim")
    assert read_classes(tmp_path / "interim") == ["bg", "leaf", "bug"]
    assert set(table["image"]) == {"images/a.png", "images/b.jpg"}


def test_custom_voc_needs_class_names(tmp_path: Path):
    root = write_custom(tmp_path / "mine", two_samples(Image.fromarray(class_map(0, 1))), None)
    with pytest.raises(FileNotFoundError, match="classes.txt.*data.voc_layout.classes"):
        read_custom_voc(root, None)
    (root / "classes.txt").write_text("bg\n\nleaf\n")
    with pytest.raises(ValueError, match="line 2"):
        read_custom_voc(root, None)
    (root / "classes.txt").write_text("bg\nleaf\nbug\n")
    with pytest.raises(ValueError, match="classes.txt lists"):
        read_custom_voc(root, ["bg", "flower", "bug"])


@pytest.mark.parametrize("bad_mask, file_format, message", [
    (palette_mask(class_map(0, 3)), "PNG", "mask value 3 is outside the 3 classes"),
    (palette_mask(class_map(0, 254)), "PNG", "mask value 254 is outside the 3 classes"),
    (palette_mask(np.zeros((HEIGHT + 1, WIDTH), np.uint8)), "PNG", f"mask is {WIDTH}x{HEIGHT + 1} but its image"),
    (Image.fromarray(np.stack([class_map(0, 128)] * 3, axis=-1)), "PNG", "mask mode RGB cannot hold class indices"),
    (Image.fromarray(class_map(0, 1).astype(np.uint16)), "PNG", "mask mode I;16 cannot hold class indices"),
    (Image.fromarray(class_map(0, 1).astype(np.float32)), "TIFF", "mask mode F cannot hold class indices"),
], ids=["value-3", "value-254", "size", "rgb-colour", "16-bit", "float"])
def test_custom_voc_bad_mask_is_an_error_naming_the_file(tmp_path: Path, bad_mask: Image.Image, file_format: str,
                                                       message: str):
    root = write_custom(tmp_path / "mine", two_samples(Image.fromarray(class_map(0, 1))), ["bg", "leaf", "bug"])
    save_mask(root / "SegmentationClass" / "a.png", bad_mask, format=file_format)
    with pytest.raises(BadSampleError, match=message) as error:
        write_interim(read_custom_voc(root, None), tmp_path / "interim")
    assert str(root / "SegmentationClass" / "a.png") in str(error.value)


def test_unreadable_image_and_missing_mask_are_errors_naming_the_file(tmp_path: Path):
    root = write_custom(tmp_path / "mine", two_samples(Image.fromarray(class_map(0, 1))), ["bg", "leaf"])
    (root / "SegmentationClass" / "b.png").unlink()
    with pytest.raises(BadSampleError, match=r"JPEGImages/b.jpg: no mask found \(expected .*SegmentationClass/b.png"):
        write_interim(read_custom_voc(root, None), tmp_path / "interim")
    (root / "JPEGImages" / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(BadSampleError, match=r"JPEGImages/a.jpg: cannot read image"):
        write_interim(read_custom_voc(root, None), tmp_path / "interim")


def test_skip_leaves_bad_samples_out_and_counts_them(tmp_path: Path):
    splits = {"train": {"good": Image.fromarray(class_map(0, 1)), "value": Image.fromarray(class_map(0, 9)),
                        "rgb": Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8))},
              "val": {"v": Image.fromarray(class_map(1, 0))}}
    root = write_custom(tmp_path / "mine", splits, ["bg", "leaf"])
    table = write_interim(read_custom_voc(root, None), tmp_path / "interim", on_bad_sample="skip")
    assert sorted(table["id"]) == ["good", "v"]
    skipped = json.loads((tmp_path / "interim" / "skipped.json").read_text())
    assert skipped["count"] == 2
    assert {entry["id"] for entry in skipped["samples"]} == {"value", "rgb"}
    assert any("mask value 9" in entry["reason"] for entry in skipped["samples"])


# --- ADE20K --------------------------------------------------------------------------------------------

def write_ade(root: Path, splits: dict[str, dict[str, np.ndarray]]) -> Path:
    rows = [f"{i}\t0.01\t10\t1\t{'wall' if i == 1 else f'thing{i}, synonym'}" for i in range(1, 151)]
    root.mkdir(parents=True)
    (root / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n" + "\n".join(rows) + "\n")
    for folder, masks in splits.items():
        for name, values in masks.items():
            save_photo(root / "images" / folder / f"{name}.jpg")
            save_mask(root / "annotations" / folder / f"{name}.png", Image.fromarray(values))
    return root


def test_ade20k_reduces_zero_label_and_maps_splits(tmp_path: Path):
    root = write_ade(tmp_path / "raw" / "ADEChallengeData2016",
                     {"training": {"ADE_train_1": class_map(0, 1, 150)}, "validation": {"ADE_val_1": class_map(2, 0)}})
    table = write_interim(read_ade20k(root.parent), tmp_path / "interim")
    classes = read_classes(tmp_path / "interim")
    assert len(classes) == 150 and classes[:2] == ["wall", "thing2"] and classes[-1] == "thing150"
    assert dict(zip(table["id"], table["split"])) == {"ADE_train_1": "train", "ADE_val_1": "val"}
    masks = interim_masks(tmp_path / "interim")
    assert np.array_equal(masks["ADE_train_1"], class_map(255, 0, 149))
    assert np.array_equal(masks["ADE_val_1"], class_map(1, 255))


def test_ade20k_image_without_annotation_or_value_above_150_is_an_error(tmp_path: Path):
    root = write_ade(tmp_path / "ADEChallengeData2016",
                     {"training": {"ADE_train_0": class_map(1), "ADE_train_1": class_map(0, 151)},
                      "validation": {"ADE_val_1": class_map(1)}})
    with pytest.raises(BadSampleError, match="ADE_train_1.png: annotation value 151 is outside 0..150"):
        write_interim(read_ade20k(root), tmp_path / "interim")
    save_photo(root / "images" / "training" / "ADE_train_2.jpg")
    table = write_interim(read_ade20k(root), tmp_path / "interim", on_bad_sample="skip")
    assert list(table["id"]) == ["ADE_train_0", "ADE_val_1"]
    reasons = [s["reason"] for s in json.loads((tmp_path / "interim" / "skipped.json").read_text())["samples"]]
    assert any("images/training/ADE_train_2.jpg: no mask found" in reason for reason in reasons)


# --- single-class sets ---------------------------------------------------------------------------------

FOREGROUND = np.zeros((HEIGHT, WIDTH), dtype=bool)
FOREGROUND[3:9, 4:12] = True


def anti_aliased(foreground: np.ndarray) -> np.ndarray:
    """0/255 with a soft edge: 90 just outside the shape, 170 on its rim (as a resized mask looks)."""
    grey = np.where(foreground, 255, 0).astype(np.uint8)
    grey[2, 4:12], grey[3, 4:12] = 90, 170
    return grey


def grey_palette(indices: np.ndarray) -> Image.Image:
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette([level for value in range(256) for level in (value,) * 3])
    return image


GREY = anti_aliased(FOREGROUND)
OPAQUE = np.full((HEIGHT, WIDTH), 255, np.uint8)
ENCODINGS = {
    "L-0-1": Image.fromarray(FOREGROUND.astype(np.uint8)),
    "L-0-255": Image.fromarray(FOREGROUND.astype(np.uint8) * 255),
    "L-anti-aliased": Image.fromarray(GREY),
    "1-bilevel": Image.fromarray(FOREGROUND),
    "P-indices-0-1-voc-colours": palette_mask(FOREGROUND.astype(np.uint8)),  # index 1 is dark red: index wins
    "P-grey-anti-aliased": grey_palette(GREY),
    "RGB-grey": Image.fromarray(np.dstack([GREY] * 3)),
    "RGBA-opaque-anti-aliased": Image.fromarray(np.dstack([GREY] * 3 + [OPAQUE])),
    "RGBA-strokes-on-transparent": Image.fromarray(np.dstack([np.zeros_like(GREY)] * 3 + [GREY])),
    "LA-opaque-anti-aliased": Image.fromarray(np.dstack([GREY, OPAQUE])),
    "LA-white-strokes-on-transparent": Image.fromarray(np.dstack([OPAQUE, GREY])),
}


def write_class(folder: Path, masks: dict[str, Image.Image], mask_suffix: str = ".png") -> None:
    for stem, mask in masks.items():
        save_photo(folder / "images" / f"{stem}.jpg")
        save_mask(folder / "masks" / f"{stem}{mask_suffix}", mask)


def test_single_class_reads_every_binary_encoding(tmp_path: Path):
    write_class(tmp_path / "root" / "leaf", ENCODINGS)
    write_class(tmp_path / "root" / "bug", {"x": ENCODINGS["L-0-255"]})
    table = write_interim(read_single_class(tmp_path / "root", val_fraction=0.3, seed=0), tmp_path / "interim")
    assert read_classes(tmp_path / "interim") == ["background", "bug", "leaf"]
    masks = interim_masks(tmp_path / "interim")
    for encoding in ENCODINGS:
        assert np.array_equal(masks[f"leaf__{encoding}"], FOREGROUND * 2), encoding
    assert np.array_equal(masks["bug__x"], FOREGROUND * 1)
    assert set(table.loc[table["id"].str.startswith("leaf"), "labelled"]) == {"0;2"}
    assert set(table.loc[table["id"].str.startswith("bug"), "labelled"]) == {"0;1"}


@pytest.mark.parametrize("mask, message", [
    (Image.fromarray(np.dstack([GREY, GREY // 2, GREY])), "mask has colour"),
    (Image.fromarray(FOREGROUND.astype(np.uint16) * 65535), "mask mode I;16 cannot hold a binary label"),
    (palette_mask(FOREGROUND * 15), "mask has colour"),  # a VOC-coloured class 15, not a binary mask
], ids=["RGB-coloured", "16-bit", "P-voc-class-15"])
def test_single_class_mask_without_binary_label_is_an_error_naming_the_file(tmp_path: Path, mask, message):
    write_class(tmp_path / "root" / "leaf", {"a": ENCODINGS["L-0-1"], "b": ENCODINGS["L-0-1"], "c": mask})
    with pytest.raises(BadSampleError, match=message) as error:
        write_interim(read_single_class(tmp_path / "root", val_fraction=0.5, seed=0), tmp_path / "interim")
    assert str(tmp_path / "root" / "leaf" / "masks" / "c.png") in str(error.value)


def test_single_class_float_mask_is_an_error(tmp_path: Path):
    write_class(tmp_path / "root" / "leaf", {"a": ENCODINGS["L-0-1"], "b": ENCODINGS["L-0-1"]})
    save_mask(tmp_path / "root" / "leaf" / "masks" / "a.png", Image.fromarray(FOREGROUND.astype(np.float32)),
              format="TIFF")
    with pytest.raises(BadSampleError, match="a.png: mask mode F cannot hold a binary label"):
        write_interim(read_single_class(tmp_path / "root", val_fraction=0.5, seed=0), tmp_path / "interim")


def test_single_class_image_without_mask_is_an_error_naming_the_image(tmp_path: Path):
    write_class(tmp_path / "root" / "leaf", {"a": ENCODINGS["L-0-1"], "b": ENCODINGS["L-0-1"]}, mask_suffix=".gif")
    save_photo(tmp_path / "root" / "leaf" / "images" / "orphan.png")
    with pytest.raises(BadSampleError, match=r"leaf/images/orphan.png: no mask found \(expected .*leaf/masks/orphan"):
        write_interim(read_single_class(tmp_path / "root", val_fraction=0.5, seed=0), tmp_path / "interim")


def test_single_class_seeded_split_is_per_class_and_reproducible(tmp_path: Path):
    mask = ENCODINGS["L-0-1"]
    write_class(tmp_path / "root" / "leaf", {f"img{i}": mask for i in range(10)})
    write_class(tmp_path / "root" / "bug", {f"img{i}": mask for i in range(4)})

    def val_ids(seed: int) -> list[str]:
        return sorted(s.id for s in read_single_class(tmp_path / "root", 0.3, seed).samples if s.split == "val")

    chosen = val_ids(seed=1)
    assert chosen == val_ids(seed=1)
    assert sum(i.startswith("leaf__") for i in chosen) == 3 and sum(i.startswith("bug__") for i in chosen) == 1
    assert any(val_ids(seed) != chosen for seed in range(2, 6))


def test_single_class_folder_with_own_split_keeps_it(tmp_path: Path):
    mask = ENCODINGS["L-0-255"]
    write_class(tmp_path / "root" / "cell" / "train", {"t1": mask, "t2": mask})
    write_class(tmp_path / "root" / "cell" / "val", {"v1": mask})
    table = write_interim(read_single_class(tmp_path / "root", val_fraction=0.5, seed=0), tmp_path / "interim")
    assert dict(zip(table["id"], table["split"])) == {"cell__t1": "train", "cell__t2": "train", "cell__v1": "val"}
    write_class(tmp_path / "root" / "cell", {"stray": mask})
    with pytest.raises(ValueError, match="either images/ \\+ masks/"):
        read_single_class(tmp_path / "root", val_fraction=0.5, seed=0)


def test_single_class_ids_must_be_unique(tmp_path: Path):
    mask = ENCODINGS["L-0-1"]
    write_class(tmp_path / "root" / "leaf", {"a": mask})
    save_photo(tmp_path / "root" / "leaf" / "images" / "a.png")
    with pytest.raises(UserError, match="leaf/images/a.jpg and a.png: two images named 'a' in one folder"):
        read_single_class(tmp_path / "root", val_fraction=0.5, seed=0)


# --- images/ + masks/ folder ---------------------------------------------------------------------------

RGB = {"bg": (0, 0, 0), "leaf": (0, 128, 0), "bug": (255, 255, 0)}


def rgb_mask(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.array(list(RGB.values()), dtype=np.uint8)[values])


def write_folder(root: Path, masks: dict[str, Image.Image], image_suffix: str = ".jpg") -> Path:
    """root/images/<name><image_suffix> and root/masks/<name>.png; a name may hold a split folder ("train/a")."""
    for name, mask in masks.items():
        save_photo(root / "images" / f"{name}{image_suffix}", mask.size)
        save_mask(root / "masks" / f"{name}.png", mask)
    return root


def read_folder_root(root: Path, classes: list[str] | None = None, colors: dict | None = None,
                     val_fraction: float = 0.25, seed: int = 0):
    return read_folder(root, classes, colors, val_fraction, seed)


@pytest.mark.parametrize("form", ["L", "P", "RGB+colors"])
def test_folder_reads_each_mask_form_in_a_seeded_split(tmp_path: Path, form: str):
    values = {f"IMG_{i}": class_map(0, i % 3, 255 if form != "RGB+colors" else 2) for i in range(8)}
    encode = {"L": Image.fromarray, "P": palette_mask, "RGB+colors": rgb_mask}[form]
    root = write_folder(tmp_path / "mine", {name: encode(mask) for name, mask in values.items()}, image_suffix=".JPG")
    colors = RGB if form == "RGB+colors" else None
    table = write_interim(read_folder_root(root, list(RGB), colors), tmp_path / "interim")
    assert read_classes(tmp_path / "interim") == ["bg", "leaf", "bug"]
    masks = interim_masks(tmp_path / "interim")
    assert all(np.array_equal(masks[name], mask) for name, mask in values.items())
    val = sorted(table.loc[table["split"] == "val", "id"])

    def val_ids(seed: int) -> list[str]:
        return sorted(s.id for s in read_folder_root(root, list(RGB), colors, seed=seed).samples if s.split == "val")

    assert len(val) == 2 and val == val_ids(seed=0)
    assert any(val_ids(seed) != val for seed in range(1, 5))


def test_folder_keeps_its_own_train_val_and_test_split(tmp_path: Path):
    mask = Image.fromarray(class_map(0, 1))
    root = write_folder(tmp_path / "mine", {"train/a": mask, "train/b": mask, "val/c": mask, "test/d": mask})
    (root / "classes.txt").write_text("bg\nleaf\n")
    table = write_interim(read_folder_root(root), tmp_path / "interim")
    assert dict(zip(table["id"], table["split"])) == {"a": "train", "b": "train", "c": "val", "d": "test"}
    write_folder(root, {"val/a": mask})
    with pytest.raises(UserError, match=r"train/a.jpg and .*val/a.jpg: one name in two splits"):
        read_folder_root(root)
    write_folder(root, {"stray": mask})
    with pytest.raises(UserError, match=r"images: put the images either directly in images/ .* such as stray.jpg"):
        read_folder_root(root)


def test_folder_colour_table_from_a_cvat_labelmap_file(tmp_path: Path):
    with_border = np.array([*RGB.values(), (224, 224, 192)], dtype=np.uint8)[class_map(0, 1, 2, 3)]
    root = write_folder(tmp_path / "mine", {"a": Image.fromarray(with_border), "b": rgb_mask(class_map(2, 0))})
    (root / "colors.txt").write_text("# label:color_rgb:parts:actions\nbg:0,0,0::\nleaf:0,128,0::\nbug:255,255,0::\n"
                                     "ignore:224,224,192::\n")
    table = write_interim(read_folder_root(root, list(RGB), val_fraction=0.5), tmp_path / "interim")
    assert np.array_equal(interim_masks(tmp_path / "interim")["a"], class_map(0, 1, 2, 255)) and len(table) == 2
    (root / "colors.txt").write_text("bg: 0 0 0\nleaf: 0 128\n")
    with pytest.raises(UserError, match=r"colors.txt: line 2 is 'leaf: 0 128'; expected 'name: R, G, B'"):
        read_folder_root(root, list(RGB))
    (root / "colors.txt").write_text("bg: 0 0 0\nleaf: 0 128 0\ntree: 9 9 9\n")
    with pytest.raises(UserError, match=r"colors.txt: 'tree' is not one of the classes \['bg', 'leaf', 'bug'\] \(or "):
        read_folder_root(root, list(RGB))
    (root / "colors.txt").unlink()
    with pytest.raises(UserError, match=r"data.folder.colors: 'bg' and 'bug' have the same colour \[0, 0, 0\]"):
        read_folder_root(root, list(RGB), {**RGB, "bug": (0, 0, 0)})


def test_folder_mask_errors_name_the_file(tmp_path: Path):
    masks = {"a": rgb_mask(class_map(0, 1)), "b": rgb_mask(class_map(0, 2)), "c": Image.fromarray(class_map(1, 0))}
    root = write_folder(tmp_path / "mine", masks)
    with pytest.raises(BadSampleError, match=r"masks/a.png: mask mode RGB cannot be read as classes .*colors.txt"):
        write_interim(read_folder_root(root, list(RGB)), tmp_path / "interim")
    with pytest.raises(BadSampleError, match=r"masks/b.png: colour \(255, 255, 0\) \(at x=\d+, y=0\) is in no class"):
        write_interim(read_folder_root(root, list(RGB), {"bg": (0, 0, 0), "leaf": (0, 128, 0)}), tmp_path / "interim")
    with pytest.raises(FileNotFoundError, match=r"mine/classes.txt: no class names; .* or set data.folder.classes"):
        read_folder_root(root)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"empty/images: no images \(.jpg, "):
        read_folder_root(tmp_path / "empty", ["bg"])


def test_folder_image_without_mask_is_an_error_or_skipped(tmp_path: Path):
    mask = Image.fromarray(class_map(0, 1))
    root = write_folder(tmp_path / "mine", {"a": mask, "b": mask, "c": mask, "d": mask})
    save_photo(root / "images" / "IMG 9.TIF")
    with pytest.raises(BadSampleError, match=r"images/IMG 9.TIF: no mask found \(expected .*masks/IMG 9.png\)"):
        write_interim(read_folder_root(root, ["bg", "leaf"], val_fraction=0.5), tmp_path / "interim")
    source = read_folder_root(root, ["bg", "leaf"], val_fraction=0.5)
    table = write_interim(source, tmp_path / "interim", on_bad_sample="skip")
    assert "IMG 9" not in set(table["id"]) and len(table) == 4
    skipped = json.loads((tmp_path / "interim" / "skipped.json").read_text())
    assert [entry["id"] for entry in skipped["samples"]] == ["IMG 9"]


# --- names as people have them, in every reader --------------------------------------------------------

def read_through_the_stages(dataset: str, root: Path, interim: Path) -> pd.DataFrame:
    """The download and merge stages' calls, with data.root given with a trailing slash."""
    data = parse(DataParams, {"dataset": dataset, "root": f"{root}/"}, "data")
    raw.download_source(data, interim.parent / "raw")
    return write_interim(read_source(data, interim.parent / "raw"), interim)


@pytest.mark.parametrize("dataset, write", [("voc_layout", own_data.write_voc_layout),
                                            ("folder", own_data.write_images_and_masks)])
def test_names_with_spaces_accents_and_upper_case_extensions_in_windows_lists(tmp_path: Path, dataset, write):
    expected = write(tmp_path / "données Æ" / dataset)
    table = read_through_the_stages(dataset, tmp_path / "données Æ" / dataset, tmp_path / "interim")
    assert read_classes(tmp_path / "interim") == own_data.CLASSES
    assert sorted(table["id"]) == sorted(own_data.all_ids())
    masks = interim_masks(tmp_path / "interim")
    assert all(np.array_equal(masks[sample_id], mask) for sample_id, mask in expected.items())
    if dataset == "voc_layout":
        assert dict(zip(table["id"], table["split"])) == {**dict.fromkeys(own_data.TRAIN_IDS, "train"),
                                                          **dict.fromkeys(own_data.VAL_IDS, "val")}


def test_voc_lists_keep_sbd_path_pairs_whose_names_hold_spaces(voc_root: Path, tmp_path: Path):
    ids = ["2008 000010", "IMG 1 é"]
    write_voc(voc_root, {"train": {i: Image.fromarray(class_map(0, 7)) for i in ids}},
              mask_dir="SegmentationClassAug", list_names={"train": "trainaug.txt"})
    (voc_root / "ImageSets/Segmentation/trainaug.txt").write_bytes(own_data.windows_text(
        [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" for i in ids]))
    table = write_interim(read_voc2012(voc_root, trainaug=True), tmp_path / "interim")
    assert sorted(table.loc[table["split"] == "train", "id"]) == ids


def test_ade20k_and_single_class_match_stems_whatever_the_extension_case(tmp_path: Path):
    root = write_ade(tmp_path / "ADEChallengeData2016", {"training": {"ADE train 1": class_map(1)},
                                                         "validation": {"ADE_val_1": class_map(1)}})
    (root / "images" / "training" / "ADE train 1.jpg").rename(root / "images" / "training" / "ADE train 1.JPG")
    assert [s.id for s in read_ade20k(root).samples] == ["ADE train 1", "ADE_val_1"]
    write_class(tmp_path / "single" / "leaf", {"IMG 1": ENCODINGS["L-0-1"], "b": ENCODINGS["L-0-1"]})
    images = tmp_path / "single" / "leaf" / "images"
    (images / "IMG 1.jpg").rename(images / "IMG 1.JPG")
    (images / "._IMG 1.JPG").write_bytes(b"macOS resource fork")
    table = write_interim(read_single_class(tmp_path / "single", val_fraction=0.5, seed=0), tmp_path / "interim")
    assert sorted(table["id"]) == ["leaf__IMG 1", "leaf__b"]
