"""Inference: sizes, test-time augmentation and model state, on tiny toy models."""
import numpy as np
import pytest
import torch
from torch import nn

from pipeline.models.inference import class_indices, predict_batch, predict_logits, predict_mask
from pipeline.models.segmenter import SegmentationModel

torch.set_num_threads(1)
CLASSES = ["background", "thing", "stuff"]


class RecordingConv(nn.Conv2d):
    """A 3x3 convolution (not flip-equivariant once its weights are random) that remembers its input sizes."""

    def __init__(self):
        super().__init__(3, len(CLASSES), 3, padding=1)
        self.input_sizes = []

    def forward(self, x):
        self.input_sizes.append(tuple(x.shape[-2:]))
        return super().forward(x)


def toy_model(network: nn.Module | None = None) -> SegmentationModel:
    torch.manual_seed(0)
    return SegmentationModel(network or RecordingConv(), CLASSES).eval()


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_logits_come_back_at_the_original_size_of_a_non_square_image():
    model = toy_model()
    logits = predict_logits(model, random_image(37, 53), image_size=32)
    assert logits.shape == (len(CLASSES), 37, 53)
    assert model.network.input_sizes == [(32, 32)]  # the model saw the training size, not the original
    assert torch.allclose(logits.exp().sum(dim=0), torch.ones(37, 53), atol=1e-5)  # log-probabilities


def test_mask_is_the_argmax_at_original_size():
    model = toy_model()
    image = random_image(20, 45)
    mask = predict_mask(model, image, image_size=16)
    assert mask.shape == (20, 45) and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, predict_logits(model, image, image_size=16).argmax(0).numpy())


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_class_indices_are_argmax_with_the_first_class_on_ties(layout):
    torch.manual_seed(0)
    scores = torch.randn(2, 5, 7, 9).round()  # rounded: many ties between classes
    scores[0, :, 0, 0] = 1.0  # all five tie: class 0
    scores = scores.contiguous(memory_format=layout)
    assert torch.equal(class_indices(scores), scores.argmax(1))
    assert class_indices(scores)[0, 0, 0] == 0
    assert torch.equal(class_indices(scores[0], dim=0), scores[0].argmax(0))


def test_flip_tta_equals_no_tta_for_a_flip_equivariant_model():
    model = toy_model(nn.Conv2d(3, len(CLASSES), 1))  # pointwise: flipping commutes with it
    image = random_image(24, 40)
    plain = predict_logits(model, image, image_size=32)
    flipped = predict_logits(model, image, image_size=32, hflip=True)
    assert torch.allclose(plain, flipped, atol=1e-5)


def test_flip_tta_makes_predictions_of_a_mirror_symmetric_image_symmetric():
    """With flip TTA, a mirror-symmetric image gets a mirror-symmetric prediction from any model;
    without it, an asymmetric 3x3 convolution does not. So the flipped view really is flipped back."""
    model = toy_model()
    half = random_image(32, 16)
    image = np.concatenate([half, half[:, ::-1]], axis=1)
    plain = predict_logits(model, image, image_size=32)
    averaged = predict_logits(model, image, image_size=32, hflip=True)
    assert not torch.allclose(plain, plain.flip(-1), atol=1e-3)
    assert torch.allclose(averaged, averaged.flip(-1), atol=1e-5)


def test_multi_scale_runs_each_scale_and_agrees_on_a_flat_image():
    """On a single-colour image a pointwise model gives the same answer at every scale."""
    network = RecordingConv()
    with torch.no_grad():
        network.weight.zero_()
        network.weight[:, :, 1, 1] = torch.randn(len(CLASSES), 3)
    model = toy_model(network)
    image = np.full((30, 50, 3), (200, 40, 90), dtype=np.uint8)
    single = predict_logits(model, image, image_size=32)
    multi = predict_logits(model, image, image_size=32, hflip=True, scales=(0.75, 1.0, 1.5))
    assert model.network.input_sizes[1:] == [(24, 24), (24, 24), (32, 32), (32, 32), (48, 48), (48, 48)]
    assert multi.shape == single.shape
    # zero padding makes the borders differ between scales; the inside must agree
    assert torch.allclose(multi[:, 5:-5, 5:-5], single[:, 5:-5, 5:-5], atol=1e-4)


def test_batch_variant_matches_one_image_at_a_time():
    model = toy_model()
    images = [random_image(32, 32, seed) for seed in (1, 2)]
    batch = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() / 255 for image in images])
    batched = predict_batch(model, batch, hflip=True)
    assert batched.shape == (2, len(CLASSES), 32, 32)
    for index, image in enumerate(images):
        assert torch.allclose(batched[index], predict_logits(model, image, image_size=32, hflip=True), atol=1e-5)


def test_training_mode_is_restored_and_batch_norm_statistics_untouched():
    model = SegmentationModel(nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, len(CLASSES), 1)), CLASSES).train()
    before = model.network[0].running_mean.clone()
    predict_logits(model, random_image(16, 16), image_size=16)
    assert model.training
    assert torch.equal(model.network[0].running_mean, before)


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32)])
def test_wrong_image_layout_is_refused(bad):
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        predict_logits(toy_model(), bad)
