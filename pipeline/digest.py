"""Content digests: the identity of data and checkpoints for MLflow tags and inputs, independent of paths."""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(paths: list[Path]) -> str:
    """sha256 (hex) of the files' bytes, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def folder_digest(root: Path, files: list[Path]) -> str:
    """sha256 (hex) of `files` under `root`: their names relative to it and their bytes, so a renamed, added or removed
    file changes it as an edited one does."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_digest([path])}\n".encode())
    return digest.hexdigest()
