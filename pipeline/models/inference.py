"""Images -> predictions, in one place, so evaluation and the predict CLI cannot drift apart.

The model sees `image_size` x `image_size` inputs (as in training); the logits are resized back to
the image's original size, because reported VOC/ADE numbers are at the original mask resolution.

Test-time augmentation averages softmax probabilities, not raw logits: logits have an arbitrary
per-view scale, so one over-confident view would dominate a logit average, while probabilities
are bounded and comparable (as in mmsegmentation's aug test). The result is returned as
log-probabilities: they are valid logits (softmax gives back the averaged probabilities, argmax
and cross-entropy work unchanged), and the output means the same with or without TTA.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.models.segmenter import SegmentationModel


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the block, then the caller's mode back: batch norm in train mode would
    silently update its running statistics from evaluation images."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _resize(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W); antialiased like PIL's BILINEAR when shrinking."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)


def predict_batch(model: SegmentationModel, images: torch.Tensor, hflip: bool = False,
                  scales: Sequence[float] = (1.0,)) -> torch.Tensor:
    """(B, 3, S, S) RGB floats in [0, 1] -> (B, C, S, S) log-probabilities, averaged over the views
    (each scale, and each scale flipped if `hflip`)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if not scales or any(scale <= 0 for scale in scales):
        raise ValueError(f"scales must be positive numbers, got {list(scales)}")
    size = tuple(images.shape[-2:])
    flips = (False, True) if hflip else (False,)
    probabilities = 0.0
    with torch.inference_mode(), _eval_mode(model):
        for scale in scales:
            scaled = _resize(images, (max(1, round(size[0] * scale)), max(1, round(size[1] * scale))))
            for flip in flips:
                view = scaled.flip(-1) if flip else scaled
                logits = _resize(model(view), size)
                if flip:
                    logits = logits.flip(-1)
                probabilities = probabilities + logits.float().softmax(dim=1)
        mean = probabilities / (len(scales) * len(flips))
        return mean.clamp_min(torch.finfo(torch.float32).tiny).log()  # no -inf: it would turn into NaN when resized


def class_indices(scores: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The index of the highest score along `dim` (the first one on ties, as argmax gives). torch.max, not
    argmax: on a CPU argmax across the class dimension is 5-15x slower (8x23x256² scores: 142 vs 25 ms)."""
    return scores.max(dim).indices


def segment_batch(model: SegmentationModel, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB floats in [0, 1] -> (B, H, W) int64 class indices at H x W, the model seeing its training
    size as in `predict_mask` (the MLflow pyfunc's predict: a served model answers as the predict CLI does)."""
    size = tuple(images.shape[-2:])
    logits = predict_batch(model, _resize(images, (model.image_size, model.image_size)))
    with torch.inference_mode():
        return class_indices(_resize(logits, size))


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (1, 3, H, W) floats in [0, 1], the model's input convention."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")
    return torch.tensor(image).permute(2, 0, 1).unsqueeze(0).float() / 255  # a copy: PIL arrays are read-only


def predict_logits(model: SegmentationModel, image: np.ndarray, image_size: int | None = None, hflip: bool = False,
                   scales: Sequence[float] = (1.0,)) -> torch.Tensor:
    """HxWx3 uint8 image -> (C, H, W) log-probabilities at the image's original size."""
    return predict_logits_many(model, [image], image_size=image_size, hflip=hflip, scales=scales)[0]


def input_device(model: torch.nn.Module) -> torch.device:
    """Where the model's weights are; a model without torch weights (an ONNX graph, models/onnx_graph.py) takes
    CPU tensors."""
    weight = next(model.parameters(), None)
    return torch.device("cpu") if weight is None else weight.device


def predict_logits_many(model: SegmentationModel, images: Sequence[np.ndarray], image_size: int | None = None,
                        hflip: bool = False, scales: Sequence[float] = (1.0,)) -> list[torch.Tensor]:
    """HxWx3 uint8 images of any sizes -> one (C, H, W) log-probability tensor per image, at its own size.

    The images are resized to `image_size` squared (default: the size the model was trained at) and
    go through the model as one batch; each one's logits are resized bilinearly back, then renormalised
    (interpolating log-probabilities does not keep them normalised)."""
    image_size = image_size or model.image_size
    device = input_device(model)
    inputs = torch.cat([_resize(image_to_tensor(image).to(device), (image_size, image_size)) for image in images])
    logits = predict_batch(model, inputs, hflip=hflip, scales=scales)
    with torch.inference_mode():
        return [_resize(one[None], image.shape[:2])[0].log_softmax(dim=0) for one, image in zip(logits, images)]


def predict_mask(model: SegmentationModel, image: np.ndarray, image_size: int | None = None, hflip: bool = False,
                 scales: Sequence[float] = (1.0,)) -> np.ndarray:
    """HxWx3 uint8 image -> HxW uint8 class indices at the image's original size."""
    if len(model.class_names) > 255:
        raise ValueError(f"{len(model.class_names)} classes do not fit uint8 masks with 255 reserved for ignore")
    logits = predict_logits(model, image, image_size=image_size, hflip=hflip, scales=scales)
    return class_indices(logits, dim=0).to(torch.uint8).cpu().numpy()
