"""Fetch a dataset archive from a list of mirrors, check its MD5, and unpack it safely.

Dataset hosts come and go (the VOC host has been unreachable since 2025), so every archive is
tried from a list of URLs in order, and only a file whose MD5 matches is ever kept. A file that
is already in place with the right MD5 is used as is: that is how a user who downloaded the
archive by hand (or copied it from another machine) skips the network entirely.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Sequence

import requests
from tqdm import tqdm

from pipeline.atomic import atomic_dir
from pipeline.errors import UserError

TIMEOUT = (10, 60)  # seconds to connect, seconds of silence while reading
CHUNK = 1 << 16  # bytes per read; a dropped connection loses at most the chunk in flight
ATTEMPTS_PER_URL = 3  # a dropped connection that made progress is resumed this many times in all
MARKER = ".extracted"  # written last inside an extracted tree; names the archive it came from


@dataclass(frozen=True)
class ArchiveSpec:
    """A published archive: its file name, its MD5, and the folder its contents live under."""

    filename: str
    md5: str
    root_subpath: str


VOC2012 = ArchiveSpec("VOCtrainval_11-May-2012.tar", "6cd6e144f989b92b3379bac3b3de84fd", "VOCdevkit/VOC2012")
ADE20K = ArchiveSpec("ADEChallengeData2016.zip", "7328b3957e407ddae1d3cbf487f149ef", "ADEChallengeData2016")


class DownloadError(UserError, RuntimeError):
    """No URL gave a file with the expected MD5; the message says how to supply the file by hand."""


class UnsafeArchiveError(UserError, ValueError):
    """An archive member would land outside the extraction folder, or is a device file."""


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in chunks so multi-GB archives do not fill memory."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_archive(urls: Sequence[str], filename: str, md5: str, download_dir: Path) -> Path:
    """`download_dir/filename` with the given MD5, downloaded from the first URL that provides it.

    A file already there with the right MD5 is returned without any network access. A partial
    download is kept as `<filename>.part` and resumed (HTTP Range) by the next attempt or run.
    """
    target = Path(download_dir) / filename
    if target.exists():
        _check_existing(target, md5)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f"{filename}.part")
    failures = []
    for url in urls:
        reason = _fetch_verified(url, part, md5)
        if reason is None:
            os.replace(part, target)
            return target
        failures.append((url, reason))
    raise DownloadError(_offline_message(target, md5, failures, part))


def _check_existing(target: Path, md5: str) -> None:
    """Refuse a wrong file in place instead of deleting it: it may be a user's own copy."""
    actual = file_md5(target)
    if actual != md5:
        raise DownloadError(
            f"{target} exists but its MD5 is {actual}, expected {md5}; it is a different or damaged "
            f"copy of {target.name}: delete it (to download again) or replace it with a good copy"
        )


def _fetch_verified(url: str, part: Path, md5: str) -> str | None:
    """Download `url` into `part` and check its MD5; None on success, else why this URL failed.

    A bad file is deleted, so the next URL starts from scratch rather than resuming wrong bytes.
    """
    reason = _download_with_resume(url, part)
    if reason is not None:
        return reason
    actual = file_md5(part)
    if actual != md5:
        part.unlink()
        return f"downloaded file has MD5 {actual}, expected {md5} (deleted)"
    return None


def _download_with_resume(url: str, part: Path) -> str | None:
    """Download `url` into `part`, resuming after a dropped connection; None on success, else the reason."""
    for _ in range(ATTEMPTS_PER_URL):
        size_before = _size(part)
        try:
            _download(url, part)
            return None
        except requests.RequestException as error:
            reason = _describe(error)
            if _size(part) <= size_before:  # no progress: retrying this URL will not help
                return reason
    return f"{reason} (gave up after {ATTEMPTS_PER_URL} attempts)"


def _download(url: str, part: Path) -> None:
    """One HTTP request: append to `part` if the server honours our Range, else rewrite it whole.

    Asks for the bytes as stored (no gzip transfer encoding), since the MD5 is of those bytes.
    """
    offset = _size(part)
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
    with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT) as response:
        if not (offset and response.status_code == 416):
            response.raise_for_status()
            _write_body(response, part, offset if response.status_code == 206 else 0)
            return
    part.unlink()  # 416: our partial is no prefix of this file (or is already whole): start over
    _download(url, part)


def _write_body(response: requests.Response, part: Path, start: int) -> None:
    """Write the body to `part` from byte `start` (0 rewrites it) under a progress bar."""
    length = response.headers.get("Content-Length")
    total = start + int(length) if length is not None else None
    bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
               desc=part.name.removesuffix(".part"), disable=None)
    with open(part, "ab" if start else "wb") as stream, bar:
        for chunk in response.iter_content(CHUNK):
            stream.write(chunk)
            bar.update(len(chunk))


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _describe(error: requests.RequestException) -> str:
    """A short reason for the error report: the HTTP status if there was one, else the error itself."""
    response = error.response
    if response is not None:
        return f"HTTP {response.status_code} {response.reason}"
    return f"{type(error).__name__}: {error}"


def _offline_message(target: Path, md5: str, failures: list[tuple[str, str]], part: Path) -> str:
    tried = "\n".join(f"  - {url}: {reason}" for url, reason in failures) or "  (no URLs are configured)"
    kept = f"\nThe partial download {part} is kept and resumed next time." if part.exists() else ""
    return (
        f"could not download {target.name} (MD5 {md5}). URLs tried, in order:\n{tried}\n"
        f"Add a working mirror URL, or download {target.name} by hand and place it at\n"
        f"  {target.resolve()}\n"
        f"It is used without downloading if its MD5 is {md5}.{kept}"
    )


def extract_archive(archive: Path, out_dir: Path) -> Path:
    """Unpack a .tar, .tar.gz or .zip into `out_dir`, all or nothing, refusing unsafe members.

    Extraction goes to a temporary folder beside `out_dir` that is renamed into place only when
    complete, with a marker written last; a tree whose marker names this archive is not redone.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    if is_extracted(out_dir, archive.name):
        return out_dir
    with atomic_dir(out_dir) as tmp:
        if archive.name.endswith(".zip"):
            _extract_zip(archive, tmp)
        elif archive.name.endswith((".tar", ".tar.gz", ".tgz")):
            _extract_tar(archive, tmp)
        else:
            raise ValueError(f"{archive}: unsupported archive type (expected .tar, .tar.gz, .tgz or .zip)")
        (tmp / MARKER).write_text(f"{archive.name}\n")
    return out_dir


def is_extracted(out_dir: Path, archive_name: str) -> bool:
    """True if `out_dir` holds a complete extraction of the archive called `archive_name`."""
    marker = Path(out_dir) / MARKER
    return marker.is_file() and marker.read_text().strip() == archive_name


def _extract_tar(archive: Path, dest: Path) -> None:
    """Check every member before writing anything; tarfile's "data" filter then also resolves
    links already on disk at each step (a symlink placed through another symlink), which a
    check of names alone cannot see."""
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            _check_tar_member(archive, member)
        try:
            tar.extractall(dest, members=members, filter="data")
        except tarfile.FilterError as error:
            raise UnsafeArchiveError(f"{archive}: {error}") from error


def _check_tar_member(archive: Path, member: tarfile.TarInfo) -> None:
    _check_member_path(archive, member.name)
    if member.issym():  # a symlink's target is relative to the folder holding it
        _check_link(archive, member, posixpath.join(posixpath.dirname(member.name), member.linkname))
    elif member.islnk():  # a hard link's target is relative to the archive root
        _check_link(archive, member, member.linkname)
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"{archive}: member {member.name!r} is a device or special file; refusing to extract it"
        )


def _check_link(archive: Path, member: tarfile.TarInfo, target: str) -> None:
    if _is_absolute(member.linkname) or _parts(posixpath.normpath(target))[0] == "..":
        raise UnsafeArchiveError(
            f"{archive}: member {member.name!r} links to {member.linkname!r}, "
            f"outside the extraction folder; refusing it"
        )


def _extract_zip(archive: Path, dest: Path) -> None:
    """zipfile would silently rewrite unsafe names; refuse them instead, so a bad archive is noticed.
    (zipfile writes symlink entries as plain files, so links need no check.)"""
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            _check_member_path(archive, name)
        zf.extractall(dest)


def _check_member_path(archive: Path, name: str) -> None:
    if _is_absolute(name):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract it")
    if ".." in _parts(name):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has a '..' component; refusing to extract it")


def _is_absolute(name: str) -> bool:
    """Absolute on POSIX or Windows ('/x', '\\x', 'C:x'): archives come from anywhere."""
    return name.startswith(("/", "\\")) or bool(PureWindowsPath(name).drive)


def _parts(name: str) -> list[str]:
    return name.replace("\\", "/").split("/")


def ensure_dataset(urls: Sequence[str], filename: str, md5: str, download_dir: Path, extract_dir: Path) -> Path:
    """The extracted tree of an archive, downloading and extracting only what is missing.

    A complete extraction is trusted without re-hashing the archive (or needing it at all),
    so deleting a multi-GB archive after extraction does not trigger a new download.
    """
    if is_extracted(extract_dir, filename):
        return Path(extract_dir)
    archive = fetch_archive(urls, filename, md5, download_dir)
    return extract_archive(archive, extract_dir)
