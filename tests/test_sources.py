"""Each downloadable dataset through the real path a stage takes: an archive in the published layout served
over HTTP on 127.0.0.1 -> download stage -> merge -> preprocess."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from pipeline.config import DataParams, parse
from pipeline.data.interim import read_classes, read_samples, write_interim
from pipeline.data.preprocess import preprocess
from pipeline.data.sources import raw, read_source
from pipeline.data.sources.download import ArchiveSpec
from tests.archives import ade20k_files, voc_files, write_tar, write_tree, write_zip
from tests.http_server import FileServer, refused_url

CASES = {
    # dataset: (archive builder, files, classes, samples per split)
    "voc2012": (write_tar, voc_files(), 21, {"train": 3, "val": 2}),
    "ade20k": (write_zip, ade20k_files(), 150, {"train": 3, "val": 2}),
}


@pytest.mark.parametrize("dataset", CASES)
def test_download_merge_preprocess_from_a_mirror(dataset, tmp_path, monkeypatch):
    writer, files, num_classes, counts = CASES[dataset]
    real = raw.ARCHIVES[dataset]
    archive = writer(tmp_path / real.filename, files).read_bytes()
    # The real MD5 belongs to the real multi-GB archive; this test's archive has its own.
    monkeypatch.setitem(raw.ARCHIVES, dataset, ArchiveSpec(real.filename, hashlib.md5(archive).hexdigest(),
                                                           real.root_subpath))
    with FileServer({f"/mirror/{real.filename}": archive}) as server:
        data = parse(DataParams, {"dataset": dataset, "download_dir": str(tmp_path / "downloads"),
                                  dataset: {"urls": [refused_url(), server.url(f"/mirror/{real.filename}")]}},
                     "data")
        raw.download_source(data, tmp_path / "raw")
    assert (tmp_path / "downloads" / real.filename).exists()

    write_interim(read_source(data, tmp_path / "raw"), tmp_path / "interim")
    assert len(read_classes(tmp_path / "interim")) == num_classes
    assert read_samples(tmp_path / "interim")["split"].value_counts().to_dict() == counts
    preprocess(tmp_path / "interim", tmp_path / "processed", 32)
    masks = np.load(tmp_path / "processed" / "train_masks.npy")
    assert masks.shape == (counts["train"], 32, 32)
    values = set(np.unique(masks)) - {255}
    assert values and max(values) < num_classes
    manifest = json.loads((tmp_path / "processed" / "manifest.json").read_text())
    assert manifest["splits"]["val"]["original_sizes"] == [[30, 40]] * counts["val"]


def test_a_dataset_root_is_read_in_place_and_nothing_is_downloaded(tmp_path):
    write_tree(tmp_path / "mine", voc_files())
    data = parse(DataParams, {"dataset": "voc2012", "root": str(tmp_path / "mine" / "VOCdevkit" / "VOC2012"),
                              "voc2012": {"urls": [refused_url()]}}, "data")
    raw.download_source(data, tmp_path / "raw")
    assert sorted(path.name for path in (tmp_path / "raw").iterdir()) == [raw.SOURCE_FILE]
    source = read_source(data, tmp_path / "raw")
    assert len(source.samples) == 5 and source.samples[0].image_path.is_relative_to(tmp_path / "mine")


def test_symlinks_leading_out_of_data_root_are_one_warning_naming_a_link_and_its_target(tmp_path, caplog):
    root = write_tree(tmp_path / "mine", voc_files()) / "VOCdevkit" / "VOC2012"
    images = sorted((root / "JPEGImages").iterdir())
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for image in images[:2]:  # two images live elsewhere, linked in
        image.rename(outside / image.name)
        image.symlink_to(outside / image.name)
    (root / "all_lists").symlink_to(root / "ImageSets")  # a link that stays inside is nobody's concern
    data = parse(DataParams, {"dataset": "voc2012", "root": str(root), "voc2012": {"urls": [refused_url()]}}, "data")
    raw.download_source(data, tmp_path / "raw")
    assert len(read_source(data, tmp_path / "raw").samples) == 5  # followed, as before
    assert caplog.messages == [
        f"data.root: {images[0]} -> {outside / images[0].name} and 1 more lead outside {root}; their "
        "targets are read as part of the dataset"]
