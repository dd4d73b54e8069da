"""How the raw files of each `data.dataset` are obtained: generated, downloaded, or a folder the user has.

With `data.root` set, nothing is downloaded: the download stage only records the root in
`data/raw/<dataset>/source.json` and merge reads the folder in place.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from pipeline.atomic import atomic_dir
from pipeline.config import DataParams
from pipeline.data.sources import synthetic
from pipeline.data.sources.download import ADE20K, VOC2012, ensure_dataset
from pipeline.repo import resolve

log = logging.getLogger(__name__)

ARCHIVES = {"voc2012": VOC2012, "ade20k": ADE20K}
SOURCE_FILE = "source.json"


def download_source(data: DataParams, raw_dir: Path) -> None:
    if data.root is not None:
        record_root(resolve(data.root), raw_dir)
    elif data.dataset == "synthetic":
        synthetic.generate(raw_dir, data.synthetic.num_train, data.synthetic.num_val, data.synthetic.seed)
    elif data.dataset in ARCHIVES:
        spec = ARCHIVES[data.dataset]
        ensure_dataset(getattr(data, data.dataset).urls, spec.filename, spec.md5, resolve(data.download_dir), raw_dir)
    else:
        raise ValueError(f"data.root: dataset {data.dataset!r} reads a folder you provide; set data.root to it")


def record_root(root: Path, raw_dir: Path) -> None:
    if not root.is_dir():
        raise FileNotFoundError(f"data.root: {root} is not a folder")
    with atomic_dir(raw_dir) as tmp:
        (tmp / SOURCE_FILE).write_text(json.dumps({"root": str(root)}, indent=2) + "\n")


def source_root(raw_dir: Path) -> Path:
    """Where the dataset's files are: the user's folder recorded by download, or `raw_dir` itself."""
    record = Path(raw_dir) / SOURCE_FILE
    return Path(json.loads(record.read_text())["root"]) if record.exists() else Path(raw_dir)


def warn_about_links_leaving(root: Path) -> None:
    """One warning line when symlinks under the user's `root` lead outside it: the readers follow them, so files
    from elsewhere become part of the dataset. Not refused, since a folder of links into a shared store is a
    common way to assemble a dataset; said, since a link can also be a mistake or planted."""
    leaving = links_leaving(root)
    if leaving:
        link, target = leaving[0]
        others = f" and {len(leaving) - 1} more" if len(leaving) > 1 else ""
        log.warning(f"data.root: {link} -> {target}{others} lead outside {root}; their targets are read as part of "
                    "the dataset")


def links_leaving(root: Path) -> list[tuple[Path, Path]]:
    """(link, target) of each symlink under `root` whose target is outside it; links are not descended into."""
    inside, found, folders = Path(root).resolve(), [], [Path(root)]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in sorted(entries, key=lambda entry: entry.name):
                if entry.is_symlink():
                    target = Path(entry.path).resolve()
                    if not target.is_relative_to(inside):
                        found.append((Path(entry.path), target))
                elif entry.is_dir():
                    folders.append(Path(entry.path))
    return found
