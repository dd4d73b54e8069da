"""Build a single_class data root from the shared real samples: membrane (ISBI 2012), vessel (DRIVE),
mitochondrion (EPFL).

    python scripts/make_single_class_root.py ../shared/data /path/to/out
    dvc exp run -S data.dataset=single_class -S data.root=/path/to/out

Files are symlinked (absolute) wherever the reader can take them as they are; only the ISBI labels are
rewritten, because there 255 is cell interior and 0 the membrane, the inverse of a "membrane" mask.
DRIVE pairs `21_training.tif` with `21_manual1.gif`, so its masks are linked under the image's stem.
EPFL keeps its own split (epfl_train -> train, epfl_test -> val); the others are split by val_fraction.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def link(target: Path, link_path: Path) -> None:
    link_path.parent.mkdir(parents=True, exist_ok=True)
    link_path.symlink_to(target.resolve())


def add_membrane(source: Path, out: Path) -> None:
    for image in sorted((source / "image").glob("*.png")):
        link(image, out / "images" / image.name)
        label = np.asarray(Image.open(source / "label" / image.name).convert("L"))
        (out / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.where(label > 127, 0, 255).astype(np.uint8)).save(out / "masks" / image.name)


def add_vessel(source: Path, out: Path) -> None:
    for image in sorted((source / "images").glob("*_training.tif")):
        number = image.stem.split("_")[0]
        link(image, out / "images" / image.name)
        link(source / "1st_manual" / f"{number}_manual1.gif", out / "masks" / f"{image.stem}.gif")


def add_mitochondrion(source: Path, out: Path) -> None:
    for folder, split in (("epfl_train", "train"), ("epfl_test", "val")):
        for image in sorted((source / folder / "slices").glob("*.png")):
            link(image, out / split / "images" / image.name)
            link(source / folder / "mitochondrion" / image.name, out / split / "masks" / image.name)


SOURCES = {  # folder in the shared data -> (class name, builder)
    "isbi2012_membrane": ("membrane", add_membrane),
    "drive/DRIVE/training": ("vessel", add_vessel),
    "epfl_mitochondria": ("mitochondrion", add_mitochondrion),
}


def build(shared_data: Path, out_dir: Path) -> None:
    """Write the root beside `out_dir` and rename it into place, so a failure leaves nothing half-built."""
    missing = [str(shared_data / name) for name in SOURCES if not (shared_data / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"source folder(s) missing: {', '.join(missing)}")
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; remove it or choose another folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        for name, (class_name, add) in SOURCES.items():
            add(shared_data / name, tmp / class_name)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared_data", type=Path, help="the shared data folder (holds isbi2012_membrane, drive, ...)")
    parser.add_argument("out_dir", type=Path, help="the single_class root to create (must not exist)")
    args = parser.parse_args()
    build(args.shared_data, args.out_dir)
    print(f"wrote {args.out_dir}; train with: dvc exp run -S data.dataset=single_class -S data.root={args.out_dir}")


if __name__ == "__main__":
    main()
