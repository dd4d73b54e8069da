"""How the raw files of each `data.dataset` are obtained: generated, downloaded, or a folder the user has.

With `data.root` naming a folder of the user's, nothing is downloaded: merge reads the folder in place, and the
download stage records in `data/raw/<dataset>/source.json` the folder and a digest of its files. DVC re-runs download
when the folder's files change (it is a dependency of the stage, dvc.yaml), and the new digest makes merge and
everything after it run again: a re-annotated mask reaches the model, and each dvc.lock names the data it came from.
An `s3://` root is copied into `data/raw/<dataset>/` instead (merge reads local files); DVC hashes the remote folder
just the same.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import fsspec

from pipeline.atomic import atomic_dir
from pipeline.config import DataParams
from pipeline.data.sources import synthetic
from pipeline.digest import folder_digest
from pipeline.data.sources.download import ADE20K, VOC2012, ensure_dataset
from pipeline.repo import resolve

log = logging.getLogger(__name__)

ARCHIVES = {"voc2012": VOC2012, "ade20k": ADE20K}
SOURCE_FILE = "source.json"


def download_source(data: DataParams, raw_dir: Path) -> None:
    if data.own_root is not None and is_url(data.own_root):
        copy_remote_folder(data.own_root, raw_dir)
    elif data.own_root is not None:
        record_root(resolve(data.own_root), raw_dir)
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
    files = sorted(path for path in root.rglob("*") if path.is_file())
    record = {"root": str(root), "files": len(files), "sha256": folder_digest(root, files)}
    with atomic_dir(raw_dir) as tmp:
        (tmp / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")


def is_url(root: str) -> bool:
    """An `s3://bucket/prefix` root (or another scheme fsspec knows) rather than a local folder."""
    return "://" in root


def copy_remote_folder(url: str, raw_dir: Path) -> None:
    """The files under `url` copied into `raw_dir`, which merge then reads as it reads a downloaded set. DVC hashes the
    remote folder as this stage's dependency (credentials and AWS_ENDPOINT_URL from the environment, as for boto3)."""
    filesystem, path = fsspec.core.url_to_fs(url)
    files = filesystem.find(path)
    if not files:
        raise FileNotFoundError(f"data.root: {url} holds no files (or cannot be listed with these credentials)")
    with atomic_dir(raw_dir) as tmp:
        for remote in files:
            local = tmp / Path(remote).relative_to(path.rstrip("/"))
            local.parent.mkdir(parents=True, exist_ok=True)
            filesystem.get_file(remote, str(local))
    log.info(f"copied {len(files)} files from {url} into {raw_dir}")


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
