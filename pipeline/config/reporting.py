"""The sections that say how a trained model is measured and its results reported: `evaluate`, `plot`, `mlflow`."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pipeline.config.types import MAX_LIST, MAX_SCALE, Batch, Block, Bool, DeviceName, Draws, Float, Str


class EvaluateParams(Block):
    batch_size: Batch = 8
    device: DeviceName = "auto"
    tta_hflip: Bool = False  # also predict the mirrored image and average the probabilities
    # input scales averaged at test time
    tta_scales: Annotated[list[Annotated[Float, Field(gt=0, le=MAX_SCALE)]],
                          Field(min_length=1, max_length=MAX_LIST)] = [1.0]


class PlotParams(Block):
    num_samples: Draws = 4


class MlflowParams(Block):
    tracking_uri: Str = "sqlite:///mlflow.db"  # relative paths are resolved at the repository root
    experiment: Str = "segmentation"
    log_onnx: Bool = True  # the logged model also as an ONNX graph: 10-20 s of export and check per training
