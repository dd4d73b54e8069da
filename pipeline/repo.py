"""The repository root, also from inside the temporary copies DVC runs `--temp` and queued experiments in."""
import os
from pathlib import Path


def repo_root() -> Path:
    """`DVC_ROOT` (always the real repository) when DVC runs the stage, else the working directory."""
    return Path(os.environ.get("DVC_ROOT", Path.cwd())).resolve()


def resolve(path: str | Path) -> Path:
    """A user-given path; relative ones are relative to the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else repo_root() / path
