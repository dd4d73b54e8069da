"""Tiny synthetic datasets for tests: generated in the VOC layout, merged and preprocessed like the real stages do."""
from __future__ import annotations

from pathlib import Path

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
