import os

import pytest
import torch
import torchvision

from pipeline.models.architectures.multiscale_unet import MultiScaleUNet
from pipeline.models.architectures.resnet_unet import ResNet34UNet, imagenet_cache_path
from pipeline.models.registry import BUILDERS, build_model, build_network, rebuild_params
from pipeline.training.losses import LOSSES, build_loss

torch.set_num_threads(1)

# Smallest sensible configuration of every registered model, so the tests stay fast on 2 cores.
TINY = {
    "unet": {"base_channels": 4, "depth": 3},
    "resnet34_unet": {"encoder_weights": "none", "decoder_channels": (16, 8, 8, 4, 4)},
    "multiscale_unet": {"base_channels": 4, "depth": 3, "stem_channels": 4, "scales": (64, 32, 16)},
}


def test_every_registered_model_has_a_tiny_config():
    assert set(TINY) == set(BUILDERS)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("size", [(64, 64), (50, 70), (33, 47)])
def test_output_has_input_size_and_one_channel_per_class(name, size):
    network = build_network(name, 5, TINY[name]).eval()
    with torch.no_grad():
        assert network(torch.rand(2, 3, *size)).shape == (2, 5, *size)


@pytest.mark.parametrize("scales", [(256, 100), (256, 512), (256, 8), (256, 128, 128), ()])
def test_multiscale_refuses_scales_that_match_no_encoder_level(scales):
    with pytest.raises(ValueError, match="scales"):
        MultiScaleUNet(3, scales=scales, depth=4)


def test_multiscale_injects_one_stem_per_extra_scale():
    network = MultiScaleUNet(3, scales=(256, 64, 16), base_channels=4, depth=4)
    assert network.levels == [2, 4]
    assert sorted(network.side_stems) == ["2", "4"]


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
    network = ResNet34UNet(3, encoder_weights=str(tmp_path / "mine.pth"))
    assert_encoder_holds(network, state)


def test_resnet_refuses_another_architecture_naming_file_and_keys(tmp_path):
    path = tmp_path / "resnet18.pth"
    resnet34_state_file(path, torchvision.models.resnet18())
    with pytest.raises(ValueError, match="missing keys") as error:
        ResNet34UNet(3, encoder_weights=str(path))
    assert str(path) in str(error.value) and "missing keys ['layer1.2." in str(error.value)


def test_resnet_refuses_unexpected_keys(tmp_path):
    state = torchvision.models.resnet34().state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"1 unexpected keys \['extra.weight'\]"):
        ResNet34UNet(3, encoder_weights=str(tmp_path / "extra.pth"))


def test_resnet_refuses_wrong_shapes_naming_the_file(tmp_path):
    state = torchvision.models.resnet34().state_dict()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    torch.save(state, tmp_path / "gray.pth")
    with pytest.raises(ValueError, match="gray.pth does not fit resnet34"):
        ResNet34UNet(3, encoder_weights=str(tmp_path / "gray.pth"))


def test_resnet_missing_path_names_the_parameter(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder_weights: .*nowhere.pth is not a file"):
        ResNet34UNet(3, encoder_weights=str(tmp_path / "nowhere.pth"))


def test_imagenet_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    with pytest.raises(FileNotFoundError) as error:
        ResNet34UNet(3, encoder_weights="imagenet")
    assert str(expected) in str(error.value) and "none" in str(error.value)


def test_imagenet_loads_from_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = resnet34_state_file(imagenet_cache_path())
    assert imagenet_cache_path() == tmp_path / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    assert_encoder_holds(ResNet34UNet(3, encoder_weights="imagenet"), state)


def test_rebuilding_from_saved_params_needs_no_weights_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: imagenet would fail
    params = {**TINY["resnet34_unet"], "encoder_weights": "imagenet"}
    resnet34_state_file(imagenet_cache_path())
    trained = build_model("resnet34_unet", ["a", "b"], params, 64).eval()
    os.remove(imagenet_cache_path())
    rebuilt = build_model("resnet34_unet", ["a", "b"], rebuild_params("resnet34_unet", params), 64)
    rebuilt.load_state_dict(trained.state_dict())
    images = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(images), trained(images))
    assert rebuild_params("unet", TINY["unet"]) == TINY["unet"]


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


def test_frozen_encoder_keeps_weights_and_batchnorm_statistics():
    torch.manual_seed(0)
    network = ResNet34UNet(3, encoder_weights="none", decoder_channels=(16, 8, 8, 4, 4))
    network.freeze_encoder(True)
    network.train()
    assert not network.encoder.training and network.decoder.training
    encoder_before = {k: v.clone() for k, v in network.encoder.state_dict().items()}
    head_before = network.head.weight.clone()
    loss_after_training(network, build_loss("ce", 3), steps=2)
    assert all(torch.equal(v, encoder_before[k]) for k, v in network.encoder.state_dict().items())
    assert not torch.equal(network.head.weight, head_before)

    network.freeze_encoder(False)
    assert network.encoder.training
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    images, target = fixed_batch()
    build_loss("ce", 3)(network(images), target).backward()
    optimizer.step()
    assert not torch.equal(network.encoder.conv1.weight, encoder_before["conv1.weight"])
