"""A trained model as an ONNX graph, and that graph run by onnxruntime behind the torch model's interface.

ONNX is data, not code: a graph file loads in any ONNX runtime (C++, the browser, a service) without running
Python. The graph holds the input normalisation, so it takes what the pyfunc takes (RGB floats in [0, 1],
any batch, height and width) and gives logits; the class names and training image size are in its metadata.
It is written through torch.export (`dynamo=True`), and every file written has first been run by onnxruntime
against torch: a graph that disagrees is an error and is not left behind.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.atomic import atomic_path
from pipeline.config import class_names_problem, image_size_problem, quote
from pipeline.errors import UserError
from pipeline.models.inference import class_indices
from pipeline.models.checkpoint import download_model_file
from pipeline.models.segmenter import SegmentationModel

INPUT_NAME, OUTPUT_NAME = "images", "logits"
CLASS_NAMES_KEY, IMAGE_SIZE_KEY = "class_names", "image_size"  # metadata_props of the graph
MAX_LOGIT_DIFFERENCE = 1e-3  # parity with torch: largest |logit difference| allowed...
MIN_SAME_CLASS = 0.999  # ...and the least share of pixels with the same class
CHECK_SEED = 0
FILE_NAME = "model.onnx"
ARTIFACT_KEY = "onnx"  # the graph among a logged MLflow model's artifacts (tracking/logged_model.py)...
IN_MLFLOW_MODEL = Path("artifacts") / FILE_NAME  # ...and where MLflow keeps it inside the model folder


class OnnxModelError(UserError):
    """An ONNX graph that cannot be written or read, or that computes something other than the torch model."""


@dataclass(frozen=True)
class Parity:
    """How closely onnxruntime reproduced torch on the check inputs."""
    max_logit_difference: float
    same_class: float

    def __str__(self) -> str:
        return f"max |logit difference| {self.max_logit_difference:.2e}, same class for {self.same_class:.4%} of pixels"


def write_onnx(model: SegmentationModel, path: Path) -> Parity:
    """Export `model` to `path` and check the file with onnxruntime (see check_parity); nothing is left at `path`
    unless the check passes."""
    with atomic_path(path) as tmp:
        try:
            export_graph(model.eval().cpu(), tmp)
            return check_parity(model, tmp)
        except OnnxModelError as error:  # named after the file asked for, not the temporary
            raise OnnxModelError(f"{path}: {error}; nothing was written") from error


def export_graph(model: SegmentationModel, path: Path) -> None:
    """The graph with a dynamic batch, height and width (traced at batch 2: torch.export fixes sizes 0 and 1; the
    values do not matter, and a constant leaves the caller's random state alone)."""
    example = torch.full((2, 3, model.image_size, model.image_size), 0.5)
    sizes = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    try:
        program = torch.onnx.export(model, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes={INPUT_NAME: sizes}, dynamo=True, verbose=False)
    except Exception as error:  # torch.export and the ONNX translation raise many types for an unsupported layer
        raise OnnxModelError(f"torch could not export {type(model.network).__name__} to ONNX "
                             f"({first_line(error)})") from error
    program.model.metadata_props.update({CLASS_NAMES_KEY: json.dumps(model.class_names),
                                         IMAGE_SIZE_KEY: str(model.image_size)})
    program.save(str(path))


def first_line(error: Exception) -> str:
    """The gist of an exporter's or onnxruntime's message, which can run to pages, for a one-line error."""
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def check_inputs(image_size: int) -> list[torch.Tensor]:
    """Noise at the training size (batch 2), and a photo-like image (smooth colour regions) 3 and 9 pixels larger
    (batch 1): the graph must agree with torch at the size it was traced at and at sizes no stride divides."""
    generator = torch.Generator().manual_seed(CHECK_SEED)
    noise = torch.rand(2, 3, image_size, image_size, generator=generator)
    regions = torch.rand(1, 3, 5, 7, generator=generator)
    smooth = F.interpolate(regions, size=(image_size + 3, image_size + 9), mode="bicubic", align_corners=False)
    return [noise, smooth.clamp(0, 1)]


def check_parity(model: SegmentationModel, path: Path) -> Parity:
    """Run the graph at `path` and `model` on the same inputs; raise if they disagree beyond the tolerances."""
    graph = OnnxSegmenter(path)
    worst, same, pixels = 0.0, 0, 0
    with torch.inference_mode():
        for images in check_inputs(model.image_size):
            expected = model(images)
            try:
                got = graph(images)
            except Exception as error:  # onnxruntime's own types, e.g. a size the traced graph cannot take
                raise OnnxModelError(f"onnxruntime cannot run the graph on a {tuple(images.shape)} input "
                                     f"({first_line(error)})") from error
            worst = max(worst, (expected - got).abs().max().item())
            same += (class_indices(expected) == class_indices(got)).sum().item()
            pixels += expected[:, 0].numel()
    parity = Parity(worst, same / pixels)
    if not parity.max_logit_difference <= MAX_LOGIT_DIFFERENCE or parity.same_class < MIN_SAME_CLASS:
        raise OnnxModelError(f"the ONNX graph disagrees with the torch model ({parity}; allowed: at most "
                             f"{MAX_LOGIT_DIFFERENCE:g}, at least {MIN_SAME_CLASS:.1%})")
    return parity


class OnnxSegmenter(nn.Module):
    """An ONNX graph of this project run by onnxruntime, with the torch model's interface (RGB in [0, 1] ->
    logits, class_names, image_size), so resizing, test-time augmentation and masks are the same code for both."""

    def __init__(self, path: Path):
        super().__init__()
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own exception types: invalid graph, protobuf parse failure
            raise OnnxModelError(f"{path}: not a readable ONNX graph ({first_line(error)})") from error
        self.class_names, self.image_size = graph_metadata(self.session, path)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        inputs = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        logits = torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0])
        if logits.ndim != 4 or logits.shape[1] != len(self.class_names):  # a dynamic class axis is known only now
            raise OnnxModelError(f"the ONNX graph gives logits of shape {tuple(logits.shape)} for "
                                 f"{len(self.class_names)} class names; expected (batch, classes, height, width)")
        return logits


def graph_metadata(session: onnxruntime.InferenceSession, path: Path) -> tuple[list[str], int]:
    """The class names and training image size a graph's metadata gives, checked as a checkpoint's are (and against
    the graph's own inputs and outputs) before anything is allocated for them."""
    metadata = session.get_modelmeta().custom_metadata_map
    try:
        class_names, image_size = json.loads(metadata[CLASS_NAMES_KEY]), int(metadata[IMAGE_SIZE_KEY])
    except (KeyError, ValueError, RecursionError) as error:
        raise OnnxModelError(f"{path}: an ONNX graph without this project's metadata ({CLASS_NAMES_KEY}, "
                             f"{IMAGE_SIZE_KEY}); export it with `python -m pipeline.export`") from error
    problem = next((f"{key}: {found}" for key, found in (("class_names", class_names_problem(class_names)),
                                                         ("image_size", image_size_problem(image_size))) if found), None)
    inputs, outputs = {i.name: i.shape for i in session.get_inputs()}, {o.name: o.shape for o in session.get_outputs()}
    if not problem and (INPUT_NAME not in inputs or OUTPUT_NAME not in outputs):
        problem = f"expected an input {INPUT_NAME!r} and an output {OUTPUT_NAME!r}, got {quote(list(inputs))}, " \
                  f"{quote(list(outputs))}"
    channels = outputs.get(OUTPUT_NAME, [None, None])[1:2]
    if not problem and channels and isinstance(channels[0], int) and channels[0] != len(class_names):
        problem = f"its logits have {channels[0]} channels for {len(class_names)} class names"
    if problem:
        raise OnnxModelError(f"{path}: its metadata is refused ({problem}); nothing was run")
    return class_names, image_size


def load_onnx(source: str) -> OnnxSegmenter:
    """An ONNX file, or the graph logged with an MLflow model of this project (its folder or a runs:/, models:/
    URI): what `predict --backend onnxruntime` runs, without the torch model's code."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() != ".onnx":
        raise OnnxModelError(f"{source}: a checkpoint runs in torch; for onnxruntime export it first with "
                             f"`python -m pipeline.export --model {source} --out model.onnx`")
    if path.is_file():
        return OnnxSegmenter(path)
    without_graph = (f"not an MLflow model with {IN_MLFLOW_MODEL.as_posix()} (models logged before ONNX export "
                     f"have none: `python -m pipeline.export --model {source} --out model.onnx` writes it)")
    if path.is_dir():
        if not (path / IN_MLFLOW_MODEL).is_file():
            raise OnnxModelError(f"{source}: {without_graph}")
        return OnnxSegmenter(path / IN_MLFLOW_MODEL)
    with tempfile.TemporaryDirectory() as tmp:  # the session holds the graph in memory: the file can go
        return OnnxSegmenter(download_model_file(source, IN_MLFLOW_MODEL, tmp, without_graph))
