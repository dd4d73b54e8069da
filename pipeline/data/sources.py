"""Each value of `data.dataset`: how its raw files are obtained, and which reader turns them into samples."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import DataParams
from pipeline.data import synthetic
from pipeline.data.interim import SourceDataset
from pipeline.data.voc import read_voc_layout


def download_source(data: DataParams, raw_dir: Path) -> None:
    if data.dataset == "synthetic":
        synthetic.generate(raw_dir, data.synthetic.num_train, data.synthetic.num_val, data.synthetic.seed)
    else:
        raise NotImplementedError(f"data.dataset: {data.dataset!r} is not wired yet")


def read_source(data: DataParams, raw_dir: Path) -> SourceDataset:
    if data.dataset == "synthetic":
        return read_voc_layout(raw_dir / synthetic.VOC_SUBDIR, synthetic.CLASSES)
    raise NotImplementedError(f"data.dataset: {data.dataset!r} is not wired yet")
