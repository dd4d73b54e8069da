"""Encoder-decoder networks from segmentation_models_pytorch (smp), the field's library of them.

smp composes any of its encoders with the standard decoders, so this module only adds what the pipeline
promises on top: any input size (smp needs sides divisible by the encoder's stride; the image is padded
and the logits cropped back) and freezing the encoder as one switch that survives `train()`.
Pretrained encoder weights are loaded by pipeline/models/weights.py, not here: building never downloads.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

UNET_DECODER_CHANNELS = (256, 128, 64, 32, 16)  # smp's default, one per encoder stage, deepest first
RESNET34_UNET_ENCODER = "resnet34"


class EncoderDecoder(nn.Module):
    """smp's `decoder` over its `encoder` (randomly initialised), `num_classes` logits at the input's size."""

    def __init__(self, num_classes: int, encoder: str = "resnet34", decoder: str = "Unet", encoder_depth: int = 5,
                 decoder_channels: Sequence[int] | None = None):
        import segmentation_models_pytorch as smp  # it imports timm (2-3 s): a unet run's stages never need it

        super().__init__()
        options = {}
        if decoder in ("Unet", "UnetPlusPlus"):  # the other decoders take a single width, smp's default is kept
            options["decoder_channels"] = list(decoder_channels or UNET_DECODER_CHANNELS[:encoder_depth])
        self.encoder_name = encoder
        self.model = smp.create_model(decoder, encoder_name=encoder, encoder_weights=None, encoder_depth=encoder_depth,
                                      classes=num_classes, **options)
        self.encoder_frozen = False

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes, H, W) for any H, W: pad the bottom and right edges by repeating the
        last row and column up to a multiple of the encoder's stride, then crop the logits back. An exported graph
        (ONNX) serves every size, so it always pads (by zero rows where none are needed)."""
        height, width = images.shape[-2:]
        stride = self.encoder.output_stride
        padding = (0, (width + stride - 1) // stride * stride - width, 0, (height + stride - 1) // stride * stride - height)
        if torch.compiler.is_exporting() or any(padding):
            images = F.pad(images, padding, mode="replicate")
        return self.model(images)[..., :height, :width]

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Stop (or resume) training the encoder: no gradients, and its batch-norm statistics kept fixed."""
        self.encoder_frozen = frozen
        self.encoder.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> EncoderDecoder:
        """As nn.Module.train, but a frozen encoder stays in eval mode: its BN running statistics do not drift
        and its dropout / drop-path stays off, so the frozen features are the pretrained ones."""
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self


def resnet34_unet(num_classes: int, decoder_channels: Sequence[int] = UNET_DECODER_CHANNELS) -> EncoderDecoder:
    """params.yaml's `resnet34_unet`: smp's Unet('resnet34'), a U-Net decoder over torchvision's ResNet-34."""
    if len(decoder_channels) != 5:
        raise ValueError(f"decoder_channels: expected 5 values (strides 16, 8, 4, 2, 1), got {list(decoder_channels)}")
    return EncoderDecoder(num_classes, encoder=RESNET34_UNET_ENCODER, decoder="Unet", decoder_channels=decoder_channels)
