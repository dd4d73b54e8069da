"""ONNX export: every model family exports with a dynamic batch, height and width and matches torch in
onnxruntime; a graph that disagrees is an error that leaves no file; predict on the graph writes torch's masks."""
from __future__ import annotations

import json
import typing
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from pipeline import export, predict
from pipeline.config import SmpParams
from pipeline.models.checkpoint import save_checkpoint
from pipeline.models.onnx_graph import (
    MAX_LOGIT_DIFFERENCE,
    MIN_SAME_CLASS,
    OnnxModelError,
    OnnxSegmenter,
    load_onnx,
    write_onnx,
)
from pipeline.models.registry import build_model
from pipeline.models.segmenter import SegmentationModel

torch.set_num_threads(1)
CLASSES = ["background", "circle", "square"]
SIZE = 64
SMALL_SMP = {"encoder": "resnet18", "encoder_weights": "none", "encoder_depth": 3}
FAMILIES = {
    "unet": {"base_channels": 4, "depth": 2},
    "multiscale_unet": {"base_channels": 4, "depth": 2, "scales": [64, 32, 16], "stem_channels": 4},
    "resnet34_unet": {"encoder_weights": "none", "decoder_channels": [16, 8, 8, 4, 4]},
    **{f"smp {decoder}": {**SMALL_SMP, "decoder": decoder, **({"decoder_channels": [16, 8, 4]} if "Unet" in decoder
                                                             else {})}
       for decoder in typing.get_args(SmpParams.model_fields["decoder"].annotation)},
}


def tiny(family: str) -> SegmentationModel:
    torch.manual_seed(0)
    return build_model(family.split()[0], CLASSES, FAMILIES[family], SIZE).eval()


@pytest.mark.parametrize("family", [family if family == "unet" else pytest.param(family, marks=pytest.mark.slow)
                                    for family in FAMILIES])  # 8-19 s each on 2 cores: unet alone in the fast suite
def test_every_family_exports_a_graph_of_any_size_that_matches_torch(family, tmp_path):
    model = tiny(family)
    parity = write_onnx(model, tmp_path / "model.onnx")
    assert parity.max_logit_difference <= MAX_LOGIT_DIFFERENCE and parity.same_class >= MIN_SAME_CLASS
    graph = onnx.load(tmp_path / "model.onnx")
    metadata = {prop.key: prop.value for prop in graph.metadata_props}
    assert json.loads(metadata["class_names"]) == CLASSES and metadata["image_size"] == str(SIZE)
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [bool(dim.dim_param) for dim in dims] == [True, False, True, True]  # batch, 3, height, width
    images = torch.rand(3, 3, 37, 50)  # neither the traced batch nor a size any stride divides
    with torch.inference_mode():
        expected, got = model(images), OnnxSegmenter(tmp_path / "model.onnx")(images)
    assert got.shape == (3, len(CLASSES), 37, 50)
    assert (expected - got).abs().max() <= MAX_LOGIT_DIFFERENCE
    assert (expected.argmax(1) == got.argmax(1)).float().mean() >= MIN_SAME_CLASS


class ExportsOtherwise(nn.Module):
    """A layer whose exported graph computes something else than it does in torch, as an exporter bug would."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, len(CLASSES), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(images) + (0.01 if torch.compiler.is_exporting() else 0.0)


def test_a_graph_that_disagrees_with_torch_is_an_error_and_leaves_no_file(tmp_path):
    model = SegmentationModel(ExportsOtherwise(), CLASSES, 16).eval()
    with pytest.raises(OnnxModelError, match=r"/model.onnx: the ONNX graph disagrees .*difference\| 1.00e-02.*nothing"):
        write_onnx(model, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []  # nor a temporary


class BranchesOnShape(nn.Module):
    """The U-Net's old skip connection: resize only where pooling floored an odd size. torch.export keeps the branch
    the traced size took, so the graph cannot add the two maps at an odd size."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, len(CLASSES), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.head(images)
        coarse = F.interpolate(F.max_pool2d(logits, 2), scale_factor=2)
        if coarse.shape[-2:] != logits.shape[-2:]:
            coarse = F.interpolate(coarse, size=logits.shape[-2:])
        return logits + coarse


def test_a_graph_that_onnxruntime_cannot_run_at_another_size_is_an_error(tmp_path):
    model = SegmentationModel(BranchesOnShape(), CLASSES, 16).eval()
    with pytest.raises(OnnxModelError, match=r"model.onnx: onnxruntime cannot run the graph on a \(1, 3, 19, 25\) "):
        write_onnx(model, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def write_images(folder: Path) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for stem, (height, width) in {"wide": (48, 80), "tall": (70, 33)}.items():
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"{stem}.png")


def masks(folder: Path) -> dict[str, np.ndarray]:
    return {path.name: np.asarray(Image.open(path)) for path in sorted(folder.glob("*_mask.png"))}


def test_predict_on_the_exported_graph_writes_the_masks_torch_writes(tmp_path, capsys):
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, tiny("unet"), "unet", FAMILIES["unet"])
    write_images(tmp_path / "images")
    assert export.main(["--model", str(checkpoint), "--out", str(tmp_path / "model.onnx")]) == 0
    assert "onnxruntime against torch: max |logit difference|" in capsys.readouterr().out
    for model, out in ((checkpoint, "torch"), (tmp_path / "model.onnx", "onnx")):  # with test-time flips: all the path
        assert predict.main([str(tmp_path / "images"), "--model", str(model), "--out", str(tmp_path / out),
                             "--hflip"]) == 0
    torch_masks, onnx_masks = masks(tmp_path / "torch"), masks(tmp_path / "onnx")
    assert list(onnx_masks) == ["tall_mask.png", "wide_mask.png"]
    assert all((torch_masks[name] == onnx_masks[name]).all() for name in onnx_masks)
    assert load_onnx(str(tmp_path / "model.onnx")).class_names == CLASSES


def test_onnxruntime_on_a_checkpoint_or_a_foreign_graph_is_one_line(tmp_path, capsys):
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, tiny("unet"), "unet", FAMILIES["unet"])
    with pytest.raises(SystemExit, match="model.pt: a checkpoint runs in torch; .*python -m pipeline.export"):
        predict.open_model(str(checkpoint), "cpu", "onnxruntime")
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(nn.Conv2d(3, 2, 1).eval(), (torch.rand(1, 3, 4, 4),), str(plain), dynamo=True, verbose=False)
    with pytest.raises(SystemExit, match="plain.onnx: an ONNX graph without this project's metadata"):
        predict.open_model(str(plain), "cpu")
    with pytest.raises(SystemExit):
        export.main(["--model", str(checkpoint), "--out", "model.bin"])
    assert "--out model.bin: name the file *.onnx" in capsys.readouterr().err
