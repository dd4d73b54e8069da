"""Tiny stand-ins for the real dataset archives, in their exact layouts, for tests that need them offline.

Contents come as `{archive path: bytes}` so a test can pack them (`write_tar`, `write_zip`),
lay them out as a folder (`write_tree`), or alter one file first. Everything is deterministic:
the same arguments give byte-identical archives.
"""
from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.labels import IGNORE_INDEX
from pipeline.data.palette import flat_palette

VOC_ROOT = "VOCdevkit/VOC2012"
ADE_ROOT = "ADEChallengeData2016"
VOC_TRAIN_IDS = ("2007_000032", "2007_000039", "2008_000015")
VOC_VAL_IDS = ("2007_000033", "2008_000009")
ADE_NUM_CLASSES = 150


def voc_files(train_ids: Sequence[str] = VOC_TRAIN_IDS, val_ids: Sequence[str] = VOC_VAL_IDS,
              size: tuple[int, int] = (40, 30), seed: int = 0) -> dict[str, bytes]:
    """Files of VOCtrainval_11-May-2012.tar for these ids, under `VOCdevkit/VOC2012/`; `size` at least 9x9.

    JPEGImages/<id>.jpg (RGB, `size` = (width, height)); SegmentationClass/<id>.png, a palette PNG
    in VOC colours: background 0, one rectangle of a class in 1..20, and a 1-pixel 255 border
    around it as in VOC; ImageSets/Segmentation/{train,val}.txt, one id per line.
    """
    rng = np.random.default_rng(seed)
    files = {}
    for sample_id in (*train_ids, *val_ids):
        files[f"{VOC_ROOT}/JPEGImages/{sample_id}.jpg"] = _jpeg(rng, size)
        mask = _rectangle_mask(rng, size, label=int(rng.integers(1, 21)), border=IGNORE_INDEX)
        files[f"{VOC_ROOT}/SegmentationClass/{sample_id}.png"] = _palette_png(mask)
    for split, ids in (("train", train_ids), ("val", val_ids)):
        files[f"{VOC_ROOT}/ImageSets/Segmentation/{split}.txt"] = "".join(f"{i}\n" for i in ids).encode()
    return files


def ade20k_files(num_train: int = 3, num_val: int = 2, size: tuple[int, int] = (40, 30),
                 seed: int = 0) -> dict[str, bytes]:
    """Files of ADEChallengeData2016.zip, under `ADEChallengeData2016/`; `size` at least 9x9.

    images/{training,validation}/ADE_{train,val}_<8 digits>.jpg (RGB, `size` = (width, height));
    annotations/.../<same stem>.png, greyscale PNGs of raw ADE labels (0 = "other", 1..150 =
    classes), a rectangle of one class on 0; objectInfo150.txt in the real tab-separated format
    (header `Idx Ratio Train Val Name`, names like "class7, synonym7", some fields with the
    trailing spaces the real file has), with placeholder names, not the real ones.
    """
    rng = np.random.default_rng(seed)
    files = {f"{ADE_ROOT}/objectInfo150.txt": _object_info()}
    for folder, prefix, count in (("training", "ADE_train", num_train), ("validation", "ADE_val", num_val)):
        for index in range(1, count + 1):
            stem = f"{prefix}_{index:08d}"
            files[f"{ADE_ROOT}/images/{folder}/{stem}.jpg"] = _jpeg(rng, size)
            mask = _rectangle_mask(rng, size, label=int(rng.integers(1, ADE_NUM_CLASSES + 1)), border=None)
            files[f"{ADE_ROOT}/annotations/{folder}/{stem}.png"] = _encode(Image.fromarray(mask, mode="L"), "PNG")
    return files


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    """An uncompressed tar (like the VOC archive) of `files`, with its folders as members too."""
    with tarfile.open(path, "w") as tar:
        for name in _with_parent_dirs(files):
            info = tarfile.TarInfo(name)
            info.mtime = 1336694400  # 11 May 2012, fixed so the archive's bytes are reproducible
            if name in files:
                info.size = len(files[name])
                tar.addfile(info, io.BytesIO(files[name]))
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
    return Path(path)


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    """A deflated zip (like the ADE20K archive) of `files`, with its folders as entries too."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in _with_parent_dirs(files):
            info = zipfile.ZipInfo(name + ("" if name in files else "/"), date_time=(2016, 1, 1, 0, 0, 0))
            zf.writestr(info, files.get(name, b""), compress_type=zipfile.ZIP_DEFLATED)
    return Path(path)


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """`files` written as a folder tree under `root`, as if the archive had been extracted there."""
    for name, data in files.items():
        path = Path(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return Path(root)


def build_voc_tar(path: Path, **options) -> Path:
    """A small VOCtrainval-style tar at `path`; `options` go to `voc_files`."""
    return write_tar(path, voc_files(**options))


def build_ade20k_zip(path: Path, **options) -> Path:
    """A small ADEChallengeData2016-style zip at `path`; `options` go to `ade20k_files`."""
    return write_zip(path, ade20k_files(**options))


def _with_parent_dirs(files: dict[str, bytes]) -> list[str]:
    """Every file and every folder above one, sorted so a folder comes before its contents."""
    names = set(files)
    for name in files:
        parts = name.split("/")
        names.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
    return sorted(names)


def _rectangle_mask(rng: np.random.Generator, size: tuple[int, int], label: int, border: int | None) -> np.ndarray:
    """HxW uint8: 0 everywhere, `label` in a random rectangle, optionally ringed by `border` pixels."""
    width, height = size
    mask = np.zeros((height, width), dtype=np.uint8)
    top, left = int(rng.integers(2, height // 3)), int(rng.integers(2, width // 3))
    bottom, right = int(rng.integers(2 * height // 3, height - 2)), int(rng.integers(2 * width // 3, width - 2))
    if border is not None:
        mask[top - 1:bottom + 1, left - 1:right + 1] = border
    mask[top:bottom, left:right] = label
    return mask


def _jpeg(rng: np.random.Generator, size: tuple[int, int]) -> bytes:
    width, height = size
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return _encode(Image.fromarray(pixels, mode="RGB"), "JPEG")


def _palette_png(mask: np.ndarray) -> bytes:
    image = Image.fromarray(mask, mode="P")
    image.putpalette(flat_palette())
    return _encode(image, "PNG")


def _encode(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def _object_info() -> bytes:
    lines = ["Idx\tRatio\tTrain\tVal\tName"]
    for index in range(1, ADE_NUM_CLASSES + 1):
        idx = f"{index} " if index % 10 == 2 else str(index)  # the real file has "22 \t", "24 \t", ...
        name = f"class{index}, synonym{index}" + (" " if index % 10 == 8 else "")  # like "bed " in the real file
        lines.append(f"{idx}\t{0.1 / index:.4f}\t{1000 - index}\t{100 - index // 2}\t{name}")
    return ("\n".join(lines) + "\n").encode()
