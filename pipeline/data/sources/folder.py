"""Reader for the layout most people's own data has: a folder of images and a folder of masks with matching names.

  root/images/*                      root/masks/*                       split by a seeded `val_fraction`
  root/images/{train,val[,test]}/*   root/masks/{train,val[,test]}/*    the folder's own split
An image pairs with the mask of the same file stem, whatever the extensions and their case (IMG_1.JPG with
IMG_1.png). Class names come from root/classes.txt (line 1 = index 0) or data.folder.classes.

Masks are class-index images (mode L or P, 255 = ignore), or RGB images painted in one colour per class, read
through a colour table: root/colors.txt or data.folder.colors. colors.txt has one `name: R, G, B` line per
class; further `:` fields and `#` lines are ignored, so CVAT's labelmap.txt is one. The name `ignore` (when no
class has it) marks the colour of pixels to leave out (255), such as VOC's borders.
"""
from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import numpy as np

from pipeline.data.files import IMAGE_SUFFIXES, files_by_stem, image_files, read_lines, seeded_val_split
from pipeline.data.imageio import BadSampleError, open_image
from pipeline.data.interim import SPLITS, TEST_SPLIT, RawSample, SourceDataset
from pipeline.data.labels import IGNORE_INDEX
from pipeline.data.sources.voc import CLASSES_FILE, INDEX_MODES, choose_class_names
from pipeline.errors import UserError

COLORS_FILE = "colors.txt"
IGNORE_NAME = "ignore"  # in a colour table: the colour of ignored pixels
COLOUR_MODES = ("RGB", "RGBA")  # RGBA: alpha is ignored (editors save opaque masks with one)
RGB_WEIGHTS = np.array([1 << 16, 1 << 8, 1])  # one int per colour
Colour = tuple[int, int, int]


def read_folder(root: Path, classes: list[str] | None, colors: dict[str, Colour] | None, val_fraction: float,
                seed: int) -> SourceDataset:
    """The image/mask pairs of `root`, in the folder's own split or a seeded one (which depends only on the seed and
    the file names)."""
    root = Path(root)
    if not (root / "images").is_dir():
        raise FileNotFoundError(f"{root / 'images'}: image folder missing (expected data.root/images/ and "
                                f"data.root/masks/, see docs/how-to/own-data.md)")
    names_file = root / CLASSES_FILE
    names = choose_class_names(names_file if names_file.exists() else None, names_file, classes, "data.folder.classes")
    splits = own_splits(root)
    if splits:
        samples = [sample for split in splits for sample in pair_files(root, split, split)]
        check_each_stem_once(samples)
    else:
        samples = seeded_val_split(pair_files(root, "", "train"), val_fraction, str(seed))
    if not samples:
        raise FileNotFoundError(f"{root / 'images'}: no images ({', '.join(IMAGE_SUFFIXES)}, in any case)")
    return SourceDataset(classes=names, samples=samples,
                         decode_mask=partial(decode_mask, colours=colour_table(root, colors, names)))


def own_splits(root: Path) -> list[str]:
    """The split subfolders of images/ (train and val, and test if present), or none: a seeded split."""
    found = [split for split in (*SPLITS, TEST_SPLIT) if (root / "images" / split).is_dir()]
    loose = image_files(root / "images")
    if found and (not set(SPLITS) <= set(found) or loose):
        raise UserError(f"{root / 'images'}: put the images either directly in images/ (split by "
                        f"data.folder.val_fraction) or in train/ and val/ subfolders (and test/), with masks/ "
                        f"alike; found {', '.join(f'{split}/' for split in found)}"
                        + (f" and images such as {loose[0].name}" if loose else ""))
    return found


def pair_files(root: Path, subfolder: str, split: str) -> list[RawSample]:
    """The images of images/<subfolder> with the mask of the same stem in masks/<subfolder>."""
    masks_dir = root / "masks" / subfolder
    masks = files_by_stem(masks_dir)
    return [RawSample(id=stem, split=split, image_path=image, mask_path=masks.get(stem, masks_dir / f"{stem}.png"))
            for stem, image in files_by_stem(root / "images" / subfolder).items()]


def check_each_stem_once(samples: list[RawSample]) -> None:
    """The same name in two split folders would be one interim sample, and a validation image trained on."""
    first: dict[str, RawSample] = {}
    for sample in samples:
        if sample.id in first:
            raise UserError(f"{first[sample.id].image_path} and {sample.image_path}: one name in two splits; "
                            f"every image belongs to one split")
        first[sample.id] = sample


def colour_table(root: Path, colors: dict[str, Colour] | None, classes: list[str]) -> dict[int, int] | None:
    """{packed RGB: class index} from root/colors.txt or data.folder.colors (both: they must agree); None
    without either, so RGB masks are refused."""
    colors_file = root / COLORS_FILE
    from_file = read_colours(colors_file) if colors_file.exists() else None
    if from_file is not None and colors and from_file != dict(colors):
        raise UserError(f"{colors_file} gives colours {from_file} but data.folder.colors is {dict(colors)}; "
                        f"keep one of them")
    table, where = (from_file, colors_file) if from_file is not None else (colors, "data.folder.colors")
    if not table:
        return None
    indices = {IGNORE_NAME: IGNORE_INDEX, **{name: index for index, name in enumerate(classes)}}
    unknown = [name for name in table if name not in indices]
    if unknown:
        raise UserError(f"{where}: {unknown[0]!r} is not one of the classes {classes} (or {IGNORE_NAME!r})")
    by_colour: dict[Colour, str] = {}
    for name, colour in table.items():
        if tuple(colour) in by_colour:
            raise UserError(f"{where}: {by_colour[tuple(colour)]!r} and {name!r} have the same colour "
                            f"{list(colour)}; a colour stands for one class")
        by_colour[tuple(colour)] = name
    return {int(np.dot(colour, RGB_WEIGHTS)): indices[name] for colour, name in by_colour.items()}


def read_colours(path: Path) -> dict[str, Colour]:
    """`name: R, G, B` per line (values 0-255, separated by commas or spaces); `#` lines are comments."""
    colours = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line or line.startswith("#"):
            continue
        name, _, fields = line.partition(":")
        values = re.split(r"[,\s]+", fields.split(":")[0].strip())
        if not (name.strip() and len(values) == 3 and all(v.isdigit() and int(v) <= 255 for v in values)):
            raise UserError(f"{path}: line {number} is {line!r}; expected 'name: R, G, B' with values 0-255")
        colours[name.strip()] = tuple(int(v) for v in values)
    return colours


def decode_mask(sample: RawSample, colours: dict[int, int] | None) -> np.ndarray:
    """HxW class indices: the values of an L or P mask, or an RGB mask's colours looked up in `colours`."""
    image = open_image(sample.mask_path)
    if image.mode in INDEX_MODES:
        return np.asarray(image, dtype=np.uint8)
    if image.mode in COLOUR_MODES and colours is not None:
        return colour_indices(np.asarray(image)[..., :3], colours, sample.mask_path)
    expected = f"one of {INDEX_MODES} with class indices, or RGB with a colour table: {COLORS_FILE} beside images/ " \
               f"or data.folder.colors"
    raise BadSampleError(f"{sample.mask_path}: mask mode {image.mode} cannot be read as classes (expected {expected})")


def colour_indices(rgb: np.ndarray, colours: dict[int, int], path: Path) -> np.ndarray:
    """Each pixel's class from its colour; a colour not in the table is an error naming it and a pixel with it."""
    codes = rgb.astype(np.int64) @ RGB_WEIGHTS
    unique, inverse = np.unique(codes, return_inverse=True)
    indices = np.array([colours.get(int(code), -1) for code in unique])
    if (indices < 0).any():
        code = int(unique[np.argmax(indices < 0)])
        y, x = np.argwhere(codes == code)[0]
        lossy = " (JPEG blurs colours: save masks as PNG)" if path.suffix.lower() in (".jpg", ".jpeg") else ""
        raise BadSampleError(f"{path}: colour {tuple(int(c) for c in rgb[y, x])} (at x={x}, y={y}) is in no class of "
                             f"the colour table{lossy}")
    return indices[inverse].reshape(codes.shape).astype(np.uint8)
