"""Files changed, added or removed in a folder given as `data.root` are seen by `dvc status`, re-run the pipeline from
download, and a revert brings the old dvc.lock back: real `dvc` commands in a temporary repository."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.digest import folder_digest
from tests import own_data
from tests.project_repo import clean_env, make_project, run
from tests.team_services import S3_KEYS, S3Server

pytestmark = pytest.mark.slow  # runs dvc


def lock_of(root: Path) -> str:
    return (root / "dvc.lock").read_text()


def status(root: Path, env: dict) -> str:
    return run(["dvc", "status", "--with-deps", "merge"], root, env)


def project_on_own_data(tmp_path: Path, dataset: str, data: Path, stage: str) -> tuple[Path, dict]:
    """A test project whose `data.root` is the folder `data` (written before), run up to `stage`."""
    env = clean_env()
    root = make_project(tmp_path / "project", env)
    run(["dvc", "exp", "run", stage, "-S", f"data.dataset={dataset}", "-S", f"data.root={data}"], root, env)
    return root, env


def test_a_changed_added_or_removed_file_under_data_root_re_runs_the_pipeline_from_download(tmp_path: Path):
    data = tmp_path / "my data"
    own_data.write_images_and_masks(data)
    root, env = project_on_own_data(tmp_path, "folder", data, "merge")
    before = lock_of(root)
    assert "up to date" in status(root, env).lower()
    download_deps = yaml.safe_load(before)["stages"]["download"]["deps"]
    assert any(dep["path"] == str(data) and dep["md5"].endswith(".dir") for dep in download_deps)  # the data's hash

    mask = next((data / "masks").iterdir())
    original = mask.read_bytes()
    pixels = np.asarray(Image.open(mask)).copy()
    pixels[0, 0] = own_data.COLOURS["pétale"]
    Image.fromarray(pixels).save(mask)  # a re-annotated pixel
    assert str(data) in status(root, env) and "modified" in status(root, env)
    output = run(["dvc", "repro", "merge"], root, env)
    assert "Running stage 'download'" in output and "Running stage 'merge'" in output
    assert lock_of(root) != before

    mask.write_bytes(original)  # reverted
    run(["dvc", "repro", "merge"], root, env)
    assert lock_of(root) == before

    extra = data / "images" / "IMG 9.png"
    shutil.copy(next((data / "images").glob("*.png")), extra)  # an added image
    assert "modified" in status(root, env)
    extra.unlink()
    assert "up to date" in status(root, env).lower()
    next((data / "images").iterdir()).unlink()  # a removed image
    assert "modified" in status(root, env)


def test_an_s3_root_is_hashed_by_dvc_copied_by_download_and_a_changed_object_re_runs_the_pipeline(tmp_path: Path):
    local = tmp_path / "local"
    own_data.write_images_and_masks(local)
    with S3Server(tmp_path) as s3:
        client = s3.client()
        client.create_bucket(Bucket="annotations")
        for path in sorted(local.rglob("*")):
            if path.is_file():
                client.upload_file(str(path), "annotations", f"team-set/{path.relative_to(local).as_posix()}")
        env = {**clean_env(), **S3_KEYS, "AWS_ENDPOINT_URL": s3.url}
        root = make_project(tmp_path / "project", env)
        url = "s3://annotations/team-set"
        run(["dvc", "exp", "run", "merge", "-S", "data.dataset=folder", "-S", f"data.root={url}"], root, env)
        before = lock_of(root)
        assert any(dep["path"] == url for dep in yaml.safe_load(before)["stages"]["download"]["deps"])
        copied = sorted(path.relative_to(root / "data/raw/folder") for path in (root / "data/raw/folder").rglob("*")
                        if path.is_file())
        assert copied == sorted(path.relative_to(local) for path in local.rglob("*") if path.is_file())
        assert "up to date" in status(root, env).lower()

        mask_key = f"team-set/masks/{next((local / 'masks').iterdir()).name}"
        original = client.get_object(Bucket="annotations", Key=mask_key)["Body"].read()
        client.put_object(Bucket="annotations", Key=mask_key, Body=original + b"\0")  # a re-uploaded mask
        assert url in status(root, env)
        output = run(["dvc", "repro", "merge"], root, env)
        assert "Running stage 'download'" in output and lock_of(root) != before
        client.put_object(Bucket="annotations", Key=mask_key, Body=original)
        run(["dvc", "repro", "merge"], root, env)
        assert lock_of(root) == before


def test_the_download_record_names_the_folder_and_its_contents(tmp_path: Path):
    data = tmp_path / "voc"
    own_data.write_voc_layout(data)
    root, _ = project_on_own_data(tmp_path, "voc_layout", data, "download")
    record = json.loads((root / "data/raw/voc_layout/source.json").read_text())
    files = sorted(path for path in data.rglob("*") if path.is_file())
    assert record == {"root": str(data), "files": len(files), "sha256": folder_digest(data, files)}


def test_the_folder_digest_follows_names_as_well_as_bytes(tmp_path: Path):
    (tmp_path / "a.png").write_bytes(b"mask")
    first = folder_digest(tmp_path, [tmp_path / "a.png"])
    (tmp_path / "a.png").rename(tmp_path / "b.png")
    assert folder_digest(tmp_path, [tmp_path / "b.png"]) != first
