"""Write-then-rename helpers, so a failing stage never leaves a half-written output behind."""
from __future__ import annotations

import errno
import fcntl
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import UserError

# a full disk, a file-size limit (ulimit -f, RLIMIT_FSIZE), a full quota
NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class NoSpaceError(UserError, OSError):
    """An output could not be written for want of space; the file it was to replace is as it was."""


def space_problem(error: BaseException) -> OSError | None:
    """The out-of-space OSError behind `error`, if any: writers wrap it (torch.save raises a RuntimeError about
    its zip once the OSError has interrupted it), so the exception chain is searched."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            return error
        error = error.__cause__ or error.__context__
    return None


@contextmanager
def said_when_out_of_space(path: Path) -> Iterator[None]:
    """Out of space while writing `path`: one line naming it, instead of the writer's tracebacks (44 lines for a
    torch checkpoint)."""
    try:
        yield
    except Exception as error:
        if (cause := space_problem(error)) is None:
            raise
        raise NoSpaceError(f"no space left writing {path} ({cause.strerror}); nothing was replaced") from None


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary file beside `path`; it replaces `path` only if the block succeeds. The temporary is
    flock-ed until then, which tells it from one a killed process left (see remove_stale_temporaries)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        tmp.chmod(0o666 & ~current_umask())  # mkstemp makes files private; the output is an ordinary file
        with said_when_out_of_space(path):
            yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files of `path` that atomic_path left in a process killed mid-write (SIGKILL runs no
    `finally`); returns them. Only its own names (`.<name>.` + mkstemp's 8 characters + `.tmp`) are touched,
    and a file still locked is being written by a live process and stays."""
    path = Path(path)
    pattern = f".{glob.escape(path.name)}.{'?' * 8}.tmp"
    return [stale for stale in sorted(path.parent.glob(pattern)) if stale.is_file() and remove_unless_locked(stale)]


def remove_unless_locked(file: Path) -> bool:
    """Delete `file` unless another open file holds a flock on it; the lock is held while deleting."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        file.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside `path`; it replaces `path` only if the block succeeds.

    Temporary directories a killed earlier run left beside `path` (hundreds of MB of arrays) are removed
    first: a stage writes one output at a time, so none of them can still be in use."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp.chmod(0o777 & ~current_umask())
    try:
        with said_when_out_of_space(path):
            yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
