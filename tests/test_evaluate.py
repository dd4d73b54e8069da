"""The evaluate stage's code on generated data: a test split is reported apart from val, and a split list
naming an image twice is refused before anything is written."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.config import EvaluateParams
from pipeline.data.interim import write_interim
from pipeline.data.preprocess import preprocess
from pipeline.data.sources import synthetic
from pipeline.data.sources.voc import VOC_SUBDIR, read_custom_voc
from pipeline.errors import UserError
from pipeline.evaluation.evaluate import evaluate
from pipeline.models.checkpoint import save_checkpoint
from pipeline.models.registry import build_model

UNET = {"base_channels": 4, "depth": 2, "bilinear": True, "dropout": 0.0}


def voc_with_lists(root: Path, lists: dict[str, list[int]]) -> Path:
    """A synthetic VOC folder whose split lists name the given sample numbers."""
    synthetic.generate(root, num_train=6, num_val=4, seed=3)
    lists_dir = root / VOC_SUBDIR / "ImageSets" / "Segmentation"
    for split, numbers in lists.items():
        (lists_dir / f"{split}.txt").write_text("".join(f"synth_{n:05d}\n" for n in numbers))
    return root


def evaluated(root: Path, tmp_path: Path) -> dict:
    write_interim(read_custom_voc(root, None), tmp_path / "interim")
    preprocess(tmp_path / "interim", tmp_path / "processed", 32)
    torch.manual_seed(0)  # the same untrained model for every call
    model = build_model("unet", synthetic.CLASSES, UNET, 32)
    save_checkpoint(tmp_path / "model.pt", model, "unet", UNET)
    return evaluate(tmp_path / "processed", tmp_path / "interim", tmp_path / "model.pt", tmp_path / "eval",
                    EvaluateParams(batch_size=3))


def test_a_test_split_is_scored_apart_from_val(tmp_path: Path):
    with_test = evaluated(voc_with_lists(tmp_path / "a", {"train": [0, 1, 2, 3], "val": [6, 7], "test": [8, 9]}),
                          tmp_path / "with")
    without = evaluated(voc_with_lists(tmp_path / "b", {"train": [0, 1, 2, 3], "val": [6, 7]}), tmp_path / "without")
    assert {f"test_{name}" for name in ("miou", "pixel_accuracy", "mean_accuracy", "fw_iou", "loss")} <= set(with_test)
    assert not any(name.startswith("test_") for name in without)
    assert {k: v for k, v in with_test.items() if not k.startswith("test_")} == without  # val alone, untouched
    assert with_test["test_loss"] != with_test["loss"]


@pytest.mark.parametrize("lists, message", [
    ({"train": [0, 1, 6], "val": [6, 7]}, r"'synth_00006' is listed in both .*train.txt and .*val.txt"),
    ({"train": [0, 1, 1], "val": [6, 7]}, r"'synth_00001' is listed twice in .*train.txt"),
])
def test_an_image_in_two_lists_is_refused(tmp_path: Path, lists: dict, message: str):
    """A UserError: the merge stage says it in one line."""
    with pytest.raises(UserError, match=message):
        read_custom_voc(voc_with_lists(tmp_path / "voc", lists), None)
