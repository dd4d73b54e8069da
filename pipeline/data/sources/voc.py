"""Readers for the Pascal VOC 2012 layout: real VOC (optionally SBD `trainaug`), the synthetic set, users' own data.

A VOC-layout root holds `JPEGImages/`, a mask folder of palette or greyscale PNGs whose values are class
indices (255 = ignore), and split lists in `ImageSets/Segmentation/`. A list has one sample per line,
either a bare id (`2007_000032`, `IMG 1 café`) or DeepLab's path pair (`/JPEGImages/2007_000032.jpg
/SegmentationClassAug/...`); which of the two a line is, is decided by the images that exist, since ids may hold spaces.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.data.files import files_by_stem, read_lines
from pipeline.data.imageio import BadSampleError, open_image
from pipeline.data.interim import SPLITS, TEST_SPLIT, RawSample, SourceDataset
from pipeline.errors import UserError

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
INDEX_MODES = ("P", "L")
VOC_SUBDIR = Path("VOCdevkit") / "VOC2012"
# The 10582-image SBD-augmented training set: masks as class-index PNGs in SegmentationClassAug/ (SBD's
# .mat files converted, plus the official VOC masks), listed under the name DeepLab (TF) uses; mmseg and
# DeepLab (Caffe) call the same list train_aug.txt / aug.txt.
TRAINAUG_MASK_DIR = "SegmentationClassAug"
TRAINAUG_LISTS = ("trainaug.txt", "train_aug.txt", "aug.txt")
CLASSES_FILE = "classes.txt"


class ClassNamesError(UserError, ValueError):
    """A classes.txt that cannot say which name each mask value has."""


class SplitListError(UserError, ValueError):
    """Split lists that put one image in two splits, or twice in one."""


def decode_index_mask(sample: RawSample) -> np.ndarray:
    """A palette or greyscale PNG whose pixel values are class indices."""
    image = open_image(sample.mask_path)
    if image.mode not in INDEX_MODES:
        raise BadSampleError(
            f"{sample.mask_path}: mask mode {image.mode} cannot hold class indices (expected one of {INDEX_MODES})"
        )
    return np.asarray(image, dtype=np.uint8)


def voc_root(root: Path) -> Path:
    """`root` itself, or `root/VOCdevkit/VOC2012` when `root` is the folder the VOC tar was unpacked into."""
    root = Path(root)
    return root / VOC_SUBDIR if (root / VOC_SUBDIR).is_dir() else root


def read_split_list(list_path: Path, image_ids: set[str]) -> list[str]:
    """Sample ids of one split list (UTF-8, any line ends, with or without a byte-order mark), see `line_id`."""
    if not list_path.exists():
        raise FileNotFoundError(f"{list_path}: split list missing")
    return [line_id(line, image_ids) for line in read_lines(list_path) if line]


def line_id(line: str, image_ids: set[str]) -> str:
    """The id a list line names: the first of the whole line, then each text before a run of spaces, that is an
    image id as written or as a path's stem. So `IMG 1` is one id when JPEGImages holds `IMG 1.jpg`, and a
    DeepLab pair `/JPEGImages/a b.jpg /SegmentationClassAug/a b.png` gives `a b`. A line naming no image is taken
    as a bare id, or the first path's stem if it has a slash, for the merge stage to report as missing."""
    candidates = [line, *(line[:space.start()] for space in re.finditer(r"\s+", line))]
    for candidate in candidates:
        for sample_id in (candidate, PurePosixPath(candidate).stem):
            if sample_id in image_ids:
                return sample_id
    return PurePosixPath(line.split()[0]).stem if "/" in line else line


def split_samples(root: Path, split: str, list_name: str, mask_dir: str) -> list[RawSample]:
    """The samples one split list names; images and masks are matched by stem, whatever their extension and its
    case (`.jpg` and `.png` are the paths reported when none is found)."""
    images, masks = files_by_stem(root / "JPEGImages"), files_by_stem(root / mask_dir)
    return [RawSample(id=sample_id, split=split,
                      image_path=images.get(sample_id, root / "JPEGImages" / f"{sample_id}.jpg"),
                      mask_path=masks.get(sample_id, root / mask_dir / f"{sample_id}.png"))
            for sample_id in read_split_list(root / "ImageSets" / "Segmentation" / list_name, set(images))]


def read_voc_layout(root: Path, classes: list[str], mask_dir: str = "SegmentationClass",
                    split_files: dict[str, str] | None = None) -> SourceDataset:
    """Samples of a `VOCdevkit/VOC2012`-style folder: JPEGImages, a mask folder, ImageSets/Segmentation lists."""
    root = Path(root)
    split_files = split_files or default_split_files(root)
    samples = [sample for split, list_name in split_files.items()
               for sample in split_samples(root, split, list_name, mask_dir)]
    check_each_id_once(samples, root / "ImageSets" / "Segmentation", split_files)
    return SourceDataset(classes=list(classes), samples=samples, decode_mask=decode_index_mask)


def default_split_files(root: Path) -> dict[str, str]:
    """train.txt and val.txt, and test.txt when the folder has one."""
    splits = [*SPLITS, TEST_SPLIT] if (root / "ImageSets" / "Segmentation" / f"{TEST_SPLIT}.txt").exists() else SPLITS
    return {split: f"{split}.txt" for split in splits}


def check_each_id_once(samples: list[RawSample], lists_dir: Path, split_files: dict[str, str]) -> None:
    """An id in two lists (or twice in one) would leak validation images into training, or count twice."""
    seen: dict[str, str] = {}
    for sample in samples:
        if sample.id in seen:
            first, second = lists_dir / split_files[seen[sample.id]], lists_dir / split_files[sample.split]
            where = f"twice in {first}" if first == second else f"in both {first} and {second}"
            raise SplitListError(f"sample id {sample.id!r} is listed {where}; every image belongs to one split, once")
        seen[sample.id] = sample.split


def read_voc2012(root: Path, trainaug: bool) -> SourceDataset:
    """VOC 2012 with its 21 classes; `trainaug` trains on SBD's 10582 images, validation stays the official val."""
    root = voc_root(root)
    if not trainaug:
        return read_voc_layout(root, VOC_CLASSES)
    lists = root / "ImageSets" / "Segmentation"
    found = [name for name in TRAINAUG_LISTS if (lists / name).exists()]
    if not found or not (root / TRAINAUG_MASK_DIR).is_dir():
        raise FileNotFoundError(
            f"{root}: trainaug needs the SBD-augmented masks in {root / TRAINAUG_MASK_DIR}/ and the list "
            f"{lists / TRAINAUG_LISTS[0]} (10582 ids); found masks: {(root / TRAINAUG_MASK_DIR).is_dir()}, "
            f"list: {found or 'none'}. Set data.voc2012.trainaug: false to train on the official 1464 images."
        )
    train = split_samples(root, "train", found[0], TRAINAUG_MASK_DIR)
    val = split_samples(root, "val", "val.txt", "SegmentationClass")
    leaked = sorted({s.id for s in train} & {s.id for s in val})
    if leaked:
        raise ValueError(f"{lists / found[0]}: {len(leaked)} ids are also in val.txt (e.g. {leaked[0]}); "
                         f"trainaug must exclude the validation images")
    return SourceDataset(classes=list(VOC_CLASSES), samples=train + val, decode_mask=decode_index_mask)


def read_class_names(path: Path) -> list[str]:
    """One class name per line, line 1 = index 0; a blank line inside the list would shift every index after it."""
    names = read_lines(path)
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ClassNamesError(f"{path}: no class names (one name per line, line 1 = class 0)")
    if "" in names:
        raise ClassNamesError(f"{path}: line {names.index('') + 1} is blank; every line up to the last names a class")
    return names


def find_class_names_file(root: Path) -> Path | None:
    """`classes.txt` in the VOC folder itself, or at `root` when that holds `VOCdevkit/` (both are common); when
    both exist they must list the same classes, or neither can be trusted to give the indices."""
    found = [folder / CLASSES_FILE for folder in dict.fromkeys([voc_root(root), Path(root)])
             if (folder / CLASSES_FILE).exists()]
    if len(found) == 2:
        first, second = read_class_names(found[0]), read_class_names(found[1])
        if first != second:
            line = next(i for i in range(max(len(first), len(second))) if first[i:i + 1] != second[i:i + 1]) + 1
            raise ClassNamesError(f"{found[0]} and {found[1]} list different classes ({len(first)} and {len(second)} "
                                  f"names, first difference on line {line}); keep one of them")
    return found[0] if found else None


def read_custom_voc(root: Path, classes: list[str] | None) -> SourceDataset:
    """A user's VOC-layout folder; class names from its `classes.txt` (index = line number) or `classes`."""
    names = choose_class_names(find_class_names_file(root), voc_root(root) / CLASSES_FILE, classes,
                               "data.voc_layout.classes")
    return read_voc_layout(voc_root(root), names)


def choose_class_names(names_file: Path | None, expected_file: Path, classes: list[str] | None, key: str) -> list[str]:
    """The names in `names_file` or the params list `classes` (set at `key`); both, they must agree."""
    from_file = read_class_names(names_file) if names_file is not None else None
    if from_file is None and not classes:
        raise FileNotFoundError(f"{expected_file}: no class names; write one name per line there "
                                f"(line 1 = index 0, usually 'background') or set {key}")
    if from_file is not None and classes and list(classes) != from_file:
        raise ValueError(f"{names_file} lists classes {from_file} but {key} is {list(classes)}; keep one of them")
    return from_file or list(classes)
