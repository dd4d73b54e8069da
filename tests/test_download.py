"""Download and extraction against a real HTTP server on 127.0.0.1, with archives in the real layouts."""
from __future__ import annotations

import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.data.sources.download import (
    ADE20K,
    CHUNK,
    VOC2012,
    ArchiveSpec,
    DownloadError,
    UnsafeArchiveError,
    ensure_dataset,
    extract_archive,
    fetch_archive,
)
from tests.archives import ade20k_files, voc_files, write_tar, write_zip
from tests.http_server import FileServer, Request, refused_url

PATH = f"/mirror/{VOC2012.filename}"


@pytest.fixture(scope="module")
def voc_tar(tmp_path_factory) -> bytes:
    """Large enough (~0.4 MB) to span several read chunks, so a dropped connection leaves progress."""
    files = voc_files(size=(320, 240))
    return write_tar(tmp_path_factory.mktemp("voc") / VOC2012.filename, files).read_bytes()


@pytest.fixture
def server(voc_tar):
    with FileServer({PATH: voc_tar}) as server:
        yield server


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _fetch(server: FileServer, data: bytes, download_dir: Path, urls=None) -> Path:
    return fetch_archive(urls or [server.url(PATH)], VOC2012.filename, _md5(data), download_dir)


def _files_under(root: Path) -> list[Path]:
    """Every non-folder entry (files and links, dangling or not) under `root`."""
    return sorted(p for p in root.rglob("*") if p.is_symlink() or not p.is_dir())


# --- fetching ---------------------------------------------------------------------------------


def test_fetch_downloads_a_file_whose_md5_matches(server, voc_tar, tmp_path):
    path = _fetch(server, voc_tar, tmp_path)

    assert path == tmp_path / VOC2012.filename
    assert path.read_bytes() == voc_tar
    assert _files_under(tmp_path) == [path]  # no .part left behind
    assert server.requests == [Request(PATH, None)]


def test_wrong_md5_raises_and_leaves_nothing_behind(server, tmp_path):
    wrong = "0" * 32
    with pytest.raises(DownloadError) as error:
        ensure_dataset([server.url(PATH)], VOC2012.filename, wrong, tmp_path / "downloads", tmp_path / "raw")

    message = str(error.value)
    assert f"expected {wrong}" in message and server.url(PATH) in message
    assert _files_under(tmp_path) == []
    assert not (tmp_path / "raw").exists()


def test_dropped_connection_is_resumed_with_a_range_request(server, voc_tar, tmp_path):
    cut = len(voc_tar) // 2
    assert cut > CHUNK  # a whole chunk arrives before the drop, so there is something to resume
    server.drop_after[PATH] = cut

    path = _fetch(server, voc_tar, tmp_path)

    first, resume = server.requests
    assert first == Request(PATH, None)
    start = int(re.fullmatch(r"bytes=(\d+)-", resume.range).group(1))
    assert 0 < start <= cut  # resumed from what arrived (less any chunk cut short), not from 0
    assert path.read_bytes() == voc_tar


def test_partial_from_an_earlier_run_is_resumed(server, voc_tar, tmp_path):
    cut = len(voc_tar) // 2
    (tmp_path / f"{VOC2012.filename}.part").write_bytes(voc_tar[:cut])

    path = _fetch(server, voc_tar, tmp_path)

    assert server.requests == [Request(PATH, f"bytes={cut}-")]
    assert path.read_bytes() == voc_tar


def test_server_ignoring_range_restarts_the_file_cleanly(server, voc_tar, tmp_path):
    server.honour_range = False
    stale = b"stale bytes that must not stay in front"
    (tmp_path / f"{VOC2012.filename}.part").write_bytes(stale)

    path = _fetch(server, voc_tar, tmp_path)

    assert server.requests == [Request(PATH, f"bytes={len(stale)}-")]
    assert path.read_bytes() == voc_tar


def test_partial_longer_than_the_file_is_discarded(server, voc_tar, tmp_path):
    (tmp_path / f"{VOC2012.filename}.part").write_bytes(voc_tar + b"junk")

    path = _fetch(server, voc_tar, tmp_path)

    assert server.requests == [Request(PATH, f"bytes={len(voc_tar) + 4}-"), Request(PATH, None)]
    assert path.read_bytes() == voc_tar


def test_failing_urls_are_skipped_until_one_serves_the_file(server, voc_tar, tmp_path):
    server.hang_up.add("/reset.tar")
    urls = [server.url("/gone.tar"), refused_url(), server.url("/reset.tar"), server.url(PATH)]

    path = _fetch(server, voc_tar, tmp_path, urls)

    assert path.read_bytes() == voc_tar
    assert [r.path for r in server.requests] == ["/gone.tar", "/reset.tar", PATH]


def test_offline_error_names_urls_reasons_file_md5_and_manual_path(server, voc_tar, tmp_path):
    server.status["/down.tar"] = 503
    urls = [server.url("/gone.tar"), refused_url("/voc.tar"), server.url("/down.tar")]

    with pytest.raises(DownloadError) as error:
        _fetch(server, voc_tar, tmp_path, urls)

    lines = str(error.value).splitlines()
    assert f"{urls[0]}: HTTP 404" in _line_with(lines, urls[0])
    assert "refused" in _line_with(lines, urls[1]).lower()
    assert f"{urls[2]}: HTTP 503" in _line_with(lines, urls[2])
    assert VOC2012.filename in lines[0] and _md5(voc_tar) in lines[0]
    assert str((tmp_path / VOC2012.filename).resolve()) in _line_with(lines, str(tmp_path))
    assert _files_under(tmp_path) == []


def test_partial_is_kept_for_later_when_every_url_fails(server, voc_tar, tmp_path):
    part = tmp_path / f"{VOC2012.filename}.part"
    part.write_bytes(voc_tar[:1000])

    with pytest.raises(DownloadError, match=f"partial download {re.escape(str(part))} is kept"):
        _fetch(server, voc_tar, tmp_path, [server.url("/gone.tar")])
    assert part.read_bytes() == voc_tar[:1000]


def _line_with(lines: list[str], text: str) -> str:
    matches = [line for line in lines if text in line]
    assert matches, f"no line mentions {text!r} in:\n" + "\n".join(lines)
    return matches[0]


def test_no_urls_still_explains_where_to_put_the_file(tmp_path):
    with pytest.raises(DownloadError, match="no URLs are configured") as error:
        fetch_archive([], VOC2012.filename, VOC2012.md5, tmp_path)
    assert str((tmp_path / VOC2012.filename).resolve()) in str(error.value)


def test_file_already_in_place_is_used_without_any_request(server, voc_tar, tmp_path):
    (tmp_path / VOC2012.filename).write_bytes(voc_tar)  # as a user who downloaded it by hand would

    assert _fetch(server, voc_tar, tmp_path).read_bytes() == voc_tar
    assert server.requests == []


def test_file_in_place_with_wrong_md5_is_reported_and_kept(server, voc_tar, tmp_path):
    manual = tmp_path / VOC2012.filename
    manual.write_bytes(voc_tar[:-1])

    with pytest.raises(DownloadError, match=f"{re.escape(str(manual))}.*expected {_md5(voc_tar)}"):
        _fetch(server, voc_tar, tmp_path)
    assert manual.read_bytes() == voc_tar[:-1]
    assert server.requests == []


# --- fetch + extract ------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "files", "pack"), [
    (VOC2012, voc_files(), write_tar),
    (ADE20K, ade20k_files(), write_zip),
], ids=["voc-tar", "ade20k-zip"])
def test_ensure_dataset_extracts_the_real_layout_once(spec: ArchiveSpec, files, pack, tmp_path):
    data = pack(tmp_path / "built", files).read_bytes()
    (tmp_path / "built").unlink()
    path = f"/{spec.filename}"
    downloads, raw = tmp_path / "downloads", tmp_path / "raw"
    with FileServer({path: data}) as server:
        root = ensure_dataset([server.url(path)], spec.filename, _md5(data), downloads, raw)
        (downloads / spec.filename).unlink()  # the tree is complete: the archive is no longer needed
        again = ensure_dataset([server.url(path)], spec.filename, _md5(data), downloads, raw)

    assert root == again == raw
    assert server.requests == [Request(path, None)]
    assert (raw / spec.root_subpath).is_dir()
    assert {name: (raw / name).read_bytes() for name in files} == files


def test_extract_skips_a_complete_tree_and_redoes_an_unmarked_one(voc_tar, tmp_path):
    archive = tmp_path / VOC2012.filename
    archive.write_bytes(voc_tar)
    train_list = tmp_path / "raw" / VOC2012.root_subpath / "ImageSets/Segmentation/train.txt"

    extract_archive(archive, tmp_path / "raw")
    train_list.write_text("edited\n")
    extract_archive(archive, tmp_path / "raw")
    assert train_list.read_text() == "edited\n"  # complete: left alone

    (tmp_path / "raw" / ".extracted").unlink()
    extract_archive(archive, tmp_path / "raw")
    assert train_list.read_bytes() == voc_files()[f"{VOC2012.root_subpath}/ImageSets/Segmentation/train.txt"]


def test_unknown_archive_type_is_refused(tmp_path):
    archive = tmp_path / "data.rar"
    archive.write_bytes(b"not supported")
    with pytest.raises(ValueError, match=r"data\.rar: unsupported archive type"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- malicious archives ----------------------------------------------------------------------------


def _tar_member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"evil") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, io.BytesIO(data)
    return info, None


def _write_raw_tar(path: Path, members: list[tuple]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, stream in [_tar_member("VOCdevkit/ok.txt"), *members]:
            tar.addfile(info, stream)
    return path


def _write_raw_zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name in ["ADEChallengeData2016/ok.txt", *names]:
            zf.writestr(zipfile.ZipInfo(name), b"evil")
    return path


# Each case: the member name the error must mention, and members that follow a harmless first one.
# Absolute paths point into the test's own folder, so a failure to refuse them is caught there.
TAR_ATTACKS = {
    "dotdot": lambda t: ("../evil.txt", [_tar_member("../evil.txt")]),
    "dotdot-inside": lambda t: ("VOCdevkit/../../evil.txt", [_tar_member("VOCdevkit/../../evil.txt")]),
    "absolute": lambda t: (str(t / "evil.txt"), [_tar_member(str(t / "evil.txt"))]),
    "symlink-out": lambda t: ("VOCdevkit/link", [
        _tar_member("VOCdevkit/link", tarfile.SYMTYPE, "../.."), _tar_member("VOCdevkit/link/evil.txt")]),
    "symlink-absolute": lambda t: ("VOCdevkit/link", [_tar_member("VOCdevkit/link", tarfile.SYMTYPE, str(t))]),
    "symlink-via-symlink": lambda t: ("d/e", [
        _tar_member("d", tarfile.SYMTYPE, "."), _tar_member("d/e", tarfile.SYMTYPE, "../evil.txt")]),
    "hardlink-out": lambda t: ("VOCdevkit/hard", [_tar_member("VOCdevkit/hard", tarfile.LNKTYPE, "../evil.txt")]),
    "device": lambda t: ("VOCdevkit/null", [_tar_member("VOCdevkit/null", tarfile.CHRTYPE)]),
}
ZIP_ATTACKS = {
    "dotdot": lambda t: ("../evil.txt", ["../evil.txt"]),
    "absolute": lambda t: ("/evil.txt", ["/evil.txt"]),
    "backslash-dotdot": lambda t: ("..\\evil.txt", ["..\\evil.txt"]),
}


@pytest.mark.parametrize("attack", TAR_ATTACKS, ids=list(TAR_ATTACKS))
def test_malicious_tar_is_refused_with_nothing_written(attack, tmp_path):
    member, members = TAR_ATTACKS[attack](tmp_path)
    archive = _write_raw_tar(tmp_path / "bad.tar", members)
    _assert_refused(archive, member, tmp_path)


@pytest.mark.parametrize("attack", ZIP_ATTACKS, ids=list(ZIP_ATTACKS))
def test_malicious_zip_is_refused_with_nothing_written(attack, tmp_path):
    member, names = ZIP_ATTACKS[attack](tmp_path)
    archive = _write_raw_zip(tmp_path / "bad.zip", names)
    _assert_refused(archive, member, tmp_path)


def _assert_refused(archive: Path, member: str, tmp_path: Path) -> None:
    out_dir = tmp_path / "deep" / "raw" / "out"  # deep enough that "../.." stays inside tmp_path
    with pytest.raises(UnsafeArchiveError) as error:
        extract_archive(archive, out_dir)

    assert str(archive) in str(error.value) and repr(member) in str(error.value)
    assert _files_under(tmp_path) == [archive]
    assert list(out_dir.parent.iterdir()) == []  # not even the temporary folder is left
