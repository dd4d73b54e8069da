"""Pretrained encoder weights: `none`, `imagenet`, or the path of the encoder's state dict (.pth, .safetensors).

`imagenet` takes segmentation_models_pytorch's own source: the Hub repo and pinned revision it lists for the
encoder (e.g. smp-hub/resnet34.imagenet), fetched with huggingface_hub into the standard Hugging Face cache
(HF_HOME, HF_HUB_CACHE). A file fetched once, by this pipeline or by smp itself, is then used offline, and a
pinned revision means a cached file is used without asking any server (HF_ENDPOINT may name a mirror).
Everything read is checked before use, the sha256 against the Hub's and the tensors against the encoder
(same names, same shapes), so a damaged download or the wrong file stops the build instead of training.
"""
from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path

import httpx2
import torch
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.file_download import repo_folder_name
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from pipeline.errors import UserError
from pipeline.models.architectures.encoder_decoder import EncoderDecoder
from pipeline.models.torch_files import UNREADABLE, function_called, load_tensors

IMAGENET_FILES = ("config.json", "model.safetensors")  # what smp's get_encoder fetches; the weights come last


class EncoderWeightsError(UserError, ValueError):
    """`encoder_weights` names weights that cannot be had or do not fit the encoder."""


def load_encoder_weights(network: EncoderDecoder, weights: str, key: str) -> None:
    """Fill the encoder of `network` as `weights` says; `key` (models.<name>.encoder_weights) names it in errors."""
    if weights == "none":  # also every model without a pretrained encoder
        return
    path = encoder_weights_file(network.encoder_name, weights, key)
    load_strict(network.encoder, read_state_dict(path, key), f"{key}: {path} does not fit encoder "
                                                             f"{network.encoder_name}")


def encoder_weights_file(encoder: str, weights: str, key: str) -> Path:
    """The file `weights` (imagenet or a path) names for `encoder`; imagenet comes from the Hugging Face cache,
    downloaded there first if missing."""
    return fetch_imagenet(encoder, key) if weights == "imagenet" else Path(weights)


def fetch_imagenet(encoder: str, key: str) -> Path:
    """smp's ImageNet weights for `encoder`, from the Hugging Face cache (downloaded there first if missing)."""
    from segmentation_models_pytorch.encoders import encoders  # smp imports timm (2-3 s): only where it is used

    available = encoders[encoder]["pretrained_settings"]
    if "imagenet" not in available:
        raise EncoderWeightsError(f"{key}: segmentation_models_pytorch has no imagenet weights for encoder {encoder!r} (only "
                         f"{', '.join(available) or 'none'}); set {key}=none or to the path of a state dict")
    repo, revision = available["imagenet"]["repo_id"], available["imagenet"]["revision"]
    try:
        path = Path([fetch(repo, revision, name) for name in IMAGENET_FILES][-1])
    except (OSError, httpx2.HTTPError) as error:  # offline and not cached, the server refused, the transfer broke
        raise EncoderWeightsError(not_available(repo, revision, key, error)) from None
    check_sha256(path, cache_folder(repo), key)
    return path


def fetch(repo: str, revision: str, filename: str) -> str:
    """The cached file, else downloaded into the cache. A server that cannot be reached fails at once: alone,
    hf_hub_download would retry it for about 25 s (with five warnings) and then fail the same way."""
    if not isinstance(try_to_load_from_cache(repo, filename, revision=revision), str):
        get_hf_file_metadata(hf_hub_url(repo, filename, revision=revision))  # one HEAD request, no retries
    return hf_hub_download(repo, filename, revision=revision)


def cache_folder(repo: str) -> Path:
    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")


def not_available(repo: str, revision: str, key: str, error: Exception) -> str:
    """One message for every way of not getting the file: where it was looked for and the three ways out."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (f"{key}: imagenet needs {repo} (revision {revision}) in the Hugging Face cache at {cache_folder(repo)}, "
            f"and downloading it from {constants.ENDPOINT} failed ({reason}). Set {key}=none to start from random "
            f"weights, or put the files there (`hf download {repo} --revision {revision}` where there is a "
            f"connection, then copy that folder), or set HF_ENDPOINT to a mirror.")


def check_sha256(path: Path, folder: Path, key: str) -> None:
    """The cache stores an LFS file under its sha256 (the Hub's ETag): a file whose content does not hash to
    that name was damaged in transfer or on disk. A cache without symlinks keeps plain copies: nothing to compare."""
    blob = path.resolve()
    if not re.fullmatch(r"[0-9a-f]{64}", blob.name):
        return
    with blob.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    if digest != blob.name:
        raise EncoderWeightsError(f"{key}: {path} is damaged (sha256 {digest}, expected {blob.name}); delete {folder} "
                         f"to download it again, or set {key}=none")


def read_state_dict(path: Path, key: str) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a torch state dict; reading never runs code from the file."""
    if not path.is_file():
        raise EncoderWeightsError(f"{key}: {path} is not a file; use imagenet, none, or the path of the encoder's state dict "
                         "(.pth or .safetensors)")
    try:
        state = load_file(path) if path.suffix == ".safetensors" else load_tensors(path)
    except (SafetensorError, *UNREADABLE) as error:
        raise EncoderWeightsError(f"{key}: {path} {why_unreadable(path, error)}") from None
    if not isinstance(state, dict):
        raise EncoderWeightsError(f"{key}: {path} holds a {type(state).__name__}, not a state dict")
    return state


def why_unreadable(path: Path, error: Exception) -> str:
    """The cause in a few words. torch's refusal of a file that would run code on loading opens with advice to load
    it with weights_only=False, the one thing not to do with a file someone sent you."""
    called = function_called(path, error)
    if called:
        return (f"would run {called} when loaded, so it is refused (nothing in it was run); use a file "
                "that holds the encoder's tensors only (torch.save(encoder.state_dict(), path) or .safetensors)")
    first_line = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    if first_line.startswith("Weights only load failed"):
        first_line = "not a file of tensors"
    return f"is damaged or not a state dict ({first_line.strip()[:200]})"


def load_strict(encoder: nn.Module, state: dict[str, torch.Tensor], failure: str) -> None:
    """Every tensor of `encoder` from `state`, same names and shapes, nothing left over. smp's encoders first drop
    their classifier (fc.*, classifier.*) from `state`, so a torchvision-format file of the same network fits."""
    try:
        encoder.load_state_dict(state)
    except RuntimeError as error:
        expected = set(encoder.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if not missing and not unexpected:  # same names, other shapes: torch's message lists them
            raise EncoderWeightsError(f"{failure}: {' '.join(str(error).split())}") from None
        raise EncoderWeightsError(f"{failure}: {len(missing)} missing keys {_preview(missing)}, "
                         f"{len(unexpected)} unexpected keys {_preview(unexpected)}") from None


def _preview(keys: list[str], limit: int = 5) -> str:
    return str(keys[:limit])[:-1] + (", ...]" if len(keys) > limit else "]")
