"""Where each `data.dataset` comes from (`download_source`, see raw.py) and which reader turns its raw files
into samples of the common interim form (`read_source`)."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import DataParams
from pipeline.data.sources.ade20k import read_ade20k
from pipeline.data.sources.folder import read_folder
from pipeline.data.interim import SourceDataset
from pipeline.data.sources.raw import download_source, source_root, warn_about_links_leaving
from pipeline.data.sources.single_class import read_single_class
from pipeline.data.sources.voc import read_custom_voc, read_voc2012

__all__ = ["download_source", "read_source"]


def read_source(data: DataParams, raw_dir: Path) -> SourceDataset:
    root = source_root(raw_dir)
    if data.own_root is not None:
        warn_about_links_leaving(root)
    if data.dataset in ("synthetic", "voc_layout"):  # synthetic writes its classes.txt like a user's folder
        return read_custom_voc(root, data.voc_layout.classes)
    if data.dataset == "voc2012":
        return read_voc2012(root, data.voc2012.trainaug)
    if data.dataset == "ade20k":
        return read_ade20k(root)
    if data.dataset == "folder":
        folder = data.folder
        return read_folder(root, folder.classes, folder.colors, folder.val_fraction, folder.split_seed)
    return read_single_class(root, data.single_class.val_fraction, data.single_class.split_seed)
