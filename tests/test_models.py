import typing

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from pipeline.config import ConfigError, Params, SmpParams, parse
from pipeline.models import weights
from pipeline.models.architectures.multiscale_unet import MultiScaleUNet
from pipeline.models.architectures.unet import ResidualDoubleConv
from pipeline.models.checkpoint import load_checkpoint, save_checkpoint
from pipeline.models.registry import BUILDERS, build_model, build_network, rebuild_params
from pipeline.training.losses import LOSSES, build_loss

torch.set_num_threads(1)

# Smallest sensible configuration of every registered model, so the tests stay fast on 2 cores.
TINY = {
    "unet": {"base_channels": 4, "depth": 3, "residual": True},
    "resnet34_unet": {"encoder_weights": "none", "decoder_channels": (16, 8, 8, 4, 4)},
    "multiscale_unet": {"base_channels": 4, "depth": 3, "stem_channels": 4, "scales": (64, 32, 16)},
    "smp": {"decoder": "FPN", "encoder": "resnet18", "encoder_weights": "none", "encoder_depth": 3},
}
SMP_DECODERS = typing.get_args(SmpParams.model_fields["decoder"].annotation)


def test_every_registered_model_has_a_tiny_config():
    assert set(TINY) == set(BUILDERS)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("size", [(64, 64), (50, 70), (33, 47)])
def test_output_has_input_size_and_one_channel_per_class(name, size):
    network = build_network(name, 5, TINY[name]).eval()
    with torch.no_grad():
        assert network(torch.rand(2, 3, *size)).shape == (2, 5, *size)


@pytest.mark.parametrize("decoder", SMP_DECODERS)
@pytest.mark.parametrize("encoder", ["resnet18", "mobilenet_v2"])
def test_every_smp_decoder_maps_images_to_logits_of_their_size(decoder, encoder):
    network = build_network("smp", 4, {"decoder": decoder, "encoder": encoder, "encoder_weights": "none"}).eval()
    with torch.no_grad():  # 64: a multiple of every stride; 50x70: padded inside, cropped back
        assert network(torch.rand(2, 3, 64, 64)).shape == (2, 4, 64, 64)
        assert network(torch.rand(1, 3, 50, 70)).shape == (1, 4, 50, 70)


@pytest.mark.parametrize("depth", [3, 4])
def test_shallower_smp_encoders_pair_with_every_decoder(depth):
    for decoder in SMP_DECODERS:
        network = build_network("smp", 2, {**TINY["smp"], "decoder": decoder, "encoder_depth": depth}).eval()
        with torch.no_grad():
            assert network(torch.rand(1, 3, 40, 40)).shape == (1, 2, 40, 40)


@pytest.mark.parametrize("raw, message", [
    ({"encoder": "resnt34"}, "models.smp.encoder: unknown encoder 'resnt34' (did you mean 'resnet34'?)"),
    ({"encoder": "vit_huge"}, "models.smp.encoder: unknown encoder 'vit_huge'; segmentation_models_pytorch"),
    ({"decoder": "PSPNet"}, "models.smp.decoder: 'PSPNet' is not allowed; choose one of Unet, UnetPlusPlus, FPN, "
                            "DeepLabV3Plus"),
    ({"encoder_depth": 6}, "models.smp.encoder_depth: must be <= 5, got 6"),
    ({"encoders": "resnet34"}, "models.smp.encoders: unknown key (did you mean 'encoder'?)"),
])
def test_smp_params_name_the_key_and_what_is_allowed(raw, message):
    with pytest.raises(ConfigError) as error:
        parse(Params, {"model": "smp", "models": {"smp": raw}}, "")
    assert message in str(error.value)


def test_smp_encoder_is_looked_up_only_when_smp_is_the_model():
    """The lookup imports smp and timm (seconds in every stage); an unused block is not checked against it."""
    raw = {"models": {"smp": {"encoder": "resnt34"}}}
    assert parse(Params, {**raw, "model": "unet"}, "").models.smp.encoder == "resnt34"
    with pytest.raises(ConfigError, match="models.smp.encoder: unknown encoder 'resnt34'"):
        parse(Params, {**raw, "model": "smp"}, "")


def test_smp_params_accept_any_smp_encoder_and_a_frozen_start():
    params = parse(Params, {"model": "smp", "train": {"freeze_encoder_epochs": 2},
                            "models": {"smp": {"encoder": "efficientnet-b0", "decoder": "DeepLabV3Plus"}}}, "")
    assert params.model_params() == SmpParams(encoder="efficientnet-b0", decoder="DeepLabV3Plus")


@pytest.mark.parametrize("scales", [(256, 100), (256, 512), (256, 8), (256, 128, 128), ()])
def test_multiscale_refuses_scales_that_match_no_encoder_level(scales):
    with pytest.raises(ValueError, match="scales"):
        MultiScaleUNet(3, scales=scales, depth=4)


def test_multiscale_injects_one_stem_per_extra_scale():
    network = MultiScaleUNet(3, scales=(256, 64, 16), base_channels=4, depth=4)
    assert network.levels == [2, 4]
    assert sorted(network.side_stems) == ["2", "4"]


def test_resnet_needs_one_decoder_width_per_encoder_stage():
    with pytest.raises(ValueError, match=r"decoder_channels: expected 5 values .* got \[16, 8\]"):
        build_network("resnet34_unet", 3, {"encoder_weights": "none", "decoder_channels": (16, 8)})


def resnet34_with(weights):
    return build_network("resnet34_unet", 3, {**TINY["resnet34_unet"], "encoder_weights": str(weights)})


def resnet34_state_file(path, model=None):
    """A torchvision-format resnet34 state dict (fc included), as a user would bring."""
    state = (model or torchvision.models.resnet34()).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def assert_encoder_holds(network, state):
    encoder = network.encoder.state_dict()
    assert all(torch.equal(encoder[key], value) for key, value in state.items() if not key.startswith("fc."))


def test_resnet_loads_a_torchvision_state_dict_from_a_path(tmp_path):
    state = resnet34_state_file(tmp_path / "mine.pth")
    assert_encoder_holds(resnet34_with(tmp_path / "mine.pth"), state)


def test_smp_loads_an_encoder_state_dict_from_a_safetensors_file(tmp_path):
    state = build_network("smp", 3, {**TINY["smp"], "encoder_depth": 5}).encoder.state_dict()
    save_file({key: value.contiguous() for key, value in state.items()}, tmp_path / "mine.safetensors")
    network = build_network("smp", 3, {**TINY["smp"], "encoder_weights": str(tmp_path / "mine.safetensors")})
    assert_encoder_holds(network, state)


def test_resnet_refuses_another_architecture_naming_key_file_and_keys(tmp_path):
    path = tmp_path / "resnet18.pth"
    resnet34_state_file(path, torchvision.models.resnet18())
    with pytest.raises(ValueError, match="missing keys") as error:
        resnet34_with(path)
    assert str(error.value).startswith(f"models.resnet34_unet.encoder_weights: {path} does not fit encoder resnet34")
    assert "missing keys ['layer1.2." in str(error.value)


def test_resnet_refuses_unexpected_keys(tmp_path):
    state = torchvision.models.resnet34().state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"0 missing keys \[\], 1 unexpected keys \['extra.weight'\]"):
        resnet34_with(tmp_path / "extra.pth")


def test_resnet_refuses_wrong_shapes_naming_the_file(tmp_path):
    state = torchvision.models.resnet34().state_dict()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    torch.save(state, tmp_path / "gray.pth")
    with pytest.raises(ValueError, match="gray.pth does not fit encoder resnet34: .*size mismatch for conv1.weight"):
        resnet34_with(tmp_path / "gray.pth")


def test_unreadable_or_missing_weight_files_name_the_key(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="models.resnet34_unet.encoder_weights: .*junk.safetensors is damaged"):
        resnet34_with(tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match="models.resnet34_unet.encoder_weights: .*nowhere.pth is not a file"):
        resnet34_with(tmp_path / "nowhere.pth")


def test_an_encoder_without_imagenet_weights_is_named_before_any_download():
    with pytest.raises(ValueError, match=r"^models.smp.encoder_weights: segmentation_models_pytorch has no imagenet "
                                         r"weights for encoder 'dpn68b' \(only imagenet\+5k\); set models.smp"):
        build_network("smp", 2, {**TINY["smp"], "encoder": "dpn68b", "encoder_weights": "imagenet"})


def test_rebuilding_reads_no_pretrained_weights_for_any_model():
    assert rebuild_params("smp", {**TINY["smp"], "encoder_weights": "imagenet"}) == TINY["smp"]
    assert rebuild_params("resnet34_unet", {"encoder_weights": "/data/mine.pth"}) == {"encoder_weights": "none"}
    assert rebuild_params("unet", TINY["unet"]) == TINY["unet"]


def test_smp_checkpoint_round_trip_rebuilds_without_fetching(tmp_path, monkeypatch):
    params = {**TINY["smp"], "encoder_weights": "imagenet"}  # as saved by a training that started from imagenet
    trained = build_model("smp", ["a", "b"], {**params, "encoder_weights": "none"}, 64).eval()
    save_checkpoint(tmp_path / "model.pt", trained, "smp", params)

    def no_fetch(*args):
        raise AssertionError("rebuilding a checkpoint must not fetch weights")

    monkeypatch.setattr(weights, "fetch_imagenet", no_fetch)
    rebuilt = load_checkpoint(tmp_path / "model.pt")
    images = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(rebuilt(images), trained(images))


def test_a_unet_checkpoint_from_before_residual_blocks_rebuilds_the_plain_unet(tmp_path):
    """Checkpoints record the architecture's params; one saved before `residual` existed lacks the key."""
    plain = {key: value for key, value in TINY["unet"].items() if key != "residual"}
    trained = build_model("unet", ["a", "b"], plain, 64).eval()
    save_checkpoint(tmp_path / "model.pt", trained, "unet", plain)
    rebuilt = load_checkpoint(tmp_path / "model.pt")
    assert not any(isinstance(module, ResidualDoubleConv) for module in rebuilt.modules())
    images = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(rebuilt(images), trained(images))
    residual = build_network("unet", 2, TINY["unet"])
    assert isinstance(residual.stem, ResidualDoubleConv) and all(isinstance(up.conv, ResidualDoubleConv)
                                                                 for up in residual.up)


def fixed_batch(size=32):
    """Random images whose 3-class target (the brightest channel) a network can learn; top rows ignored."""
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    target = images.argmax(1)
    target[:, :2] = 255
    return images, target


def loss_after_training(network, loss_fn, steps):
    """Loss on one fixed batch before and after `steps` Adam steps on it (train mode throughout)."""
    images, target = fixed_batch()
    optimizer = torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=1e-2)
    network.train()
    losses = []
    for _ in range(steps + 1):
        loss = loss_fn(network(images), target)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return losses[0], losses[-1]


@pytest.mark.parametrize("name", sorted(TINY))
def test_training_lowers_the_loss_for_every_model(name):
    torch.manual_seed(0)
    before, after = loss_after_training(build_network(name, 3, TINY[name]), build_loss("ce", 3), steps=10)
    assert after < 0.9 * before


@pytest.mark.parametrize("loss", LOSSES)
def test_training_lowers_every_loss(loss):
    torch.manual_seed(0)
    before, after = loss_after_training(build_network("unet", 3, TINY["unet"]), build_loss(loss, 3), steps=10)
    assert after < 0.9 * before


@pytest.mark.parametrize("name, params", [("resnet34_unet", TINY["resnet34_unet"]),
                                          ("smp", {**TINY["smp"], "encoder": "mobilenet_v2"})])
def test_frozen_encoder_keeps_weights_and_batchnorm_statistics(name, params):
    torch.manual_seed(0)
    model = build_model(name, ["a", "b", "c"], params, 32)
    network = model.network
    model.freeze_encoder(True)
    model.train()
    batch_norms = [m for m in network.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert batch_norms and not any(m.training for m in batch_norms) and network.model.decoder.training
    encoder_before = {k: v.clone() for k, v in network.encoder.state_dict().items()}
    head_before = network.model.segmentation_head[0].weight.clone()
    loss_after_training(model, build_loss("ce", 3), steps=2)
    assert all(p.grad is None for p in network.encoder.parameters())
    assert all(torch.equal(v, encoder_before[k]) for k, v in network.encoder.state_dict().items())
    assert not torch.equal(network.model.segmentation_head[0].weight, head_before)

    model.freeze_encoder(False)
    assert all(m.training for m in batch_norms)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    images, target = fixed_batch()
    build_loss("ce", 3)(model(images), target).backward()
    optimizer.step()
    assert any(not torch.equal(v, encoder_before[k]) for k, v in network.encoder.state_dict().items())
