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
