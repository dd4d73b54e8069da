"""`encoder_weights: imagenet` against a local stand-in for the Hugging Face Hub: fetched into the cache, verified,
then used offline; and the one message when neither the server nor the cache has the weights. Nothing here leaves
127.0.0.1: every build runs in a fresh interpreter whose HF_ENDPOINT, cache and proxies are ours, because
huggingface_hub reads them once, at import."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import torch
from safetensors.torch import save
from segmentation_models_pytorch.encoders import encoders, get_encoder

from tests.http_server import LoopbackServer, refused_url

REPO_ROOT = Path(__file__).resolve().parents[1]
ENCODER = "mobilenet_v2"  # the smallest smp encoder with imagenet weights (2.3 M parameters)
REPO, REVISION = encoders[ENCODER]["pretrained_settings"]["imagenet"].values()
CACHE_FOLDER = Path("hf", "hub", "models--smp-hub--mobilenet_v2.imagenet")
BUILD = f"""
import sys, torch
from safetensors.torch import load_file
from pipeline.models.registry import build_network
network = build_network("smp", 2, {{"encoder": "{ENCODER}", "encoder_weights": "imagenet", "decoder": "FPN"}})
served, loaded = load_file(sys.argv[1]), network.encoder.state_dict()
assert served.keys() == loaded.keys() and all(torch.equal(loaded[key], value) for key, value in served.items())
"""


class HubServer(LoopbackServer):
    """What hf_hub_download asks of the Hub: HEAD and GET on /{repo}/resolve/{revision}/{filename}, answered with
    the commit (X-Repo-Commit), the file's sha256 as ETag (the Hub's etag of an LFS file) and its length."""

    def __init__(self, files: dict[str, bytes], etags: dict[str, str] | None = None):
        self.files = {f"/{REPO}/resolve/{REVISION}/{name}": data for name, data in files.items()}
        self.etags = {path: hashlib.sha256(data).hexdigest() for path, data in self.files.items()}
        self.etags.update({f"/{REPO}/resolve/{REVISION}/{name}": etag for name, etag in (etags or {}).items()})
        self.requests: list[tuple[str, str]] = []
        super().__init__(_resolve_handler(self))
        self.endpoint = self.url("")


def _resolve_handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self._answer(with_body=False)

        def do_GET(self) -> None:
            self._answer(with_body=True)

        def _answer(self, with_body: bool) -> None:
            server.requests.append((self.command, self.path.rpartition("/")[2]))
            if self.path not in server.files:
                self.send_error(404)
                return
            data = server.files[self.path]
            self.send_response(200)
            self.send_header("X-Repo-Commit", REVISION)
            self.send_header("ETag", f'"{server.etags[self.path]}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if with_body:
                self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def weights() -> bytes:
    """A freshly initialised encoder's state dict, in the format of smp's files on the Hub."""
    torch.manual_seed(0)
    return save(get_encoder(ENCODER).state_dict())


def hub_files(weights: bytes) -> dict[str, bytes]:
    return {"config.json": json.dumps({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}).encode(),
            "model.safetensors": weights}


def build(tmp_path: Path, endpoint: str, weights: bytes) -> subprocess.CompletedProcess:
    """build_network with imagenet weights in a fresh interpreter whose Hub is `endpoint` and cache is tmp_path/hf."""
    (tmp_path / "served.safetensors").write_bytes(weights)
    env = {key: value for key, value in os.environ.items()
           if not key.lower().endswith("_proxy") and not key.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf" / "hub"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_UPDATE_CHECK="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               NO_PROXY="127.0.0.1")
    return subprocess.run([sys.executable, "-c", BUILD, str(tmp_path / "served.safetensors")], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # fresh interpreters
def test_imagenet_weights_are_fetched_into_the_cache_then_used_offline(tmp_path, weights):
    with HubServer(hub_files(weights)) as hub:
        online = build(tmp_path, hub.endpoint, weights)
    assert online.returncode == 0, online.stderr
    assert hub.requests.count(("GET", "model.safetensors")) == 1 and ("GET", "config.json") in hub.requests
    assert (tmp_path / CACHE_FOLDER / "snapshots" / REVISION / "model.safetensors").is_file()

    offline = build(tmp_path, hub.endpoint, weights)  # the server is gone; the pinned revision is cached
    assert offline.returncode == 0, offline.stderr


@pytest.mark.slow
def test_offline_without_a_cache_stops_with_one_message_naming_the_cache_and_the_way_out(tmp_path, weights):
    result = build(tmp_path, refused_url("").rstrip("/"), weights)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"pipeline.models.weights.EncoderWeightsError: models.smp.encoder_weights: "
                                f"imagenet needs {REPO} (revision {REVISION}) "
                                f"in the Hugging Face cache at {tmp_path / CACHE_FOLDER}, and downloading it")
    assert "Set models.smp.encoder_weights=none" in last_line and "HF_ENDPOINT" in last_line
    assert "Retrying" not in result.stderr and "During handling" not in result.stderr


@pytest.mark.slow
def test_a_download_that_does_not_match_the_hubs_sha256_is_refused(tmp_path, weights):
    damaged = bytearray(weights)
    damaged[len(damaged) // 2] ^= 0xFF  # one damaged byte in the tensor data: still a loadable safetensors file
    expected = hashlib.sha256(weights).hexdigest()
    with HubServer(hub_files(bytes(damaged)), etags={"model.safetensors": expected}) as hub:
        result = build(tmp_path, hub.endpoint, weights)
    assert result.returncode != 0
    assert f"model.safetensors is damaged (sha256 {hashlib.sha256(damaged).hexdigest()}, expected {expected}); " \
           f"delete {tmp_path / CACHE_FOLDER}" in result.stderr
