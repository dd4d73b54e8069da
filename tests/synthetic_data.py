"""Tiny synthetic datasets for tests: generated in the VOC layout, merged and preprocessed like the real stages do."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.interim import write_interim
from pipeline.data.preprocess import preprocess
from pipeline.data.sources import synthetic
from pipeline.data.sources.voc import read_custom_voc


def processed_synthetic(root: Path, num_train: int, num_val: int, seed: int, image_size: int = 64) -> Path:
    """`root/raw`, `root/interim` and `root/processed`; returns the processed folder (what training reads)."""
    synthetic.generate(root / "raw", num_train=num_train, num_val=num_val, seed=seed)
    write_interim(read_custom_voc(root / "raw", None), root / "interim")
    preprocess(root / "interim", root / "processed", image_size)
    return root / "processed"


def tiny_training(project: Path) -> dict:
    """The params of a tiny training in `project`, whose processed synthetic data is made here."""
    processed_synthetic(project / "generated", num_train=8, num_val=4, seed=1)
    (project / "data" / "processed").mkdir(parents=True)
    (project / "generated" / "processed").rename(project / "data" / "processed" / "synthetic")
    return {"data": {"image_size": 64}, "models": {"unet": {"base_channels": 4, "depth": 2}},
            "train": {"epochs": 2, "batch_size": 4}, "augment": {"crop_size": 0, "crops_per_image": 1},
            "mlflow": {"tracking_uri": f"sqlite:///{project / 'mlflow.db'}", "experiment": "tests",
                       "log_onnx": False}}


def write_single_class_root(root: Path, synthetic_raw: Path) -> None:
    """Two single-class sets cut from the synthetic scenes: discs in some images, squares in others."""
    voc = synthetic_raw / "VOCdevkit" / "VOC2012"
    ids = sorted(path.stem for path in (voc / "JPEGImages").glob("*.jpg"))
    for offset, (name, class_index) in enumerate([("disc", 1), ("square", 2)]):
        for sample_id in ids[offset::2]:
            mask = np.asarray(Image.open(voc / "SegmentationClass" / f"{sample_id}.png")) == class_index
            (root / name / "images").mkdir(parents=True, exist_ok=True)
            (root / name / "masks").mkdir(parents=True, exist_ok=True)
            Image.open(voc / "JPEGImages" / f"{sample_id}.jpg").save(root / name / "images" / f"{sample_id}.png")
            Image.fromarray((mask * 255).astype(np.uint8)).save(root / name / "masks" / f"{sample_id}.png")
