"""The perceptual loss is off (with a clear message) without user-supplied weights, and an
LPIPS-style distance with them."""

import pytest
import torch
from safetensors.torch import save_file

from artok.losses import PERCEPTUAL_OFF_MESSAGE, PerceptualLoss, load_perceptual_loss


def test_off_with_a_clear_message_without_weights():
    with pytest.warns(UserWarning, match="perceptual loss / LPIPS is off: no backbone weights"):
        assert load_perceptual_loss(None) is None
    assert "downloads nothing" in PERCEPTUAL_OFF_MESSAGE


def test_trainer_warns_and_trains_without_weights():
    from artok.data.base import ImageDataset
    from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig
    from artok.training import TrainConfig, train_tokenizer
    from artok.training.tokenizer_trainer import TokenizerLossConfig

    tokenizer = CNNTokenizer(CNNTokenizerConfig(image_size=8, base_channels=8, channel_multipliers=(1, 2), latent_dim=8,
                                                quantizer="fsq", quantizer_options={"levels": [5, 5, 5]}))
    data = ImageDataset(torch.zeros(8, 1, 8, 8, dtype=torch.uint8), torch.zeros(8, dtype=torch.long), ["x"], "t", "train")
    config = TrainConfig(steps=1, batch_size=4, warmup_steps=1, progress=False)
    with pytest.warns(UserWarning, match="is off"):
        result = train_tokenizer(tokenizer, data, config, losses=TokenizerLossConfig(perceptual_weight=1.0))
    assert "perceptual" not in result.history[-1]


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    torch.manual_seed(0)
    state = {f"features.{k}": v.contiguous() for k, v in PerceptualLoss().features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # other torchvision keys are ignored
    path = tmp_path_factory.mktemp("vgg") / "vgg16.safetensors"
    save_file(state, str(path))
    return path


def test_lpips_style_distance_with_weights(vgg_weights):
    loss = load_perceptual_loss(vgg_weights)
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    assert loss.distance(x, x).abs().max() < 1e-6
    d = loss.distance(x, y)
    assert d.shape == (2,) and (d > 0).all()
    x.requires_grad_(True)
    loss(x, y).backward()
    assert x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())


def test_bad_weights_are_rejected(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file({"features.0.weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(ValueError, match="not a VGG16 state dict"):
        load_perceptual_loss(path)
    with pytest.raises(FileNotFoundError):
        load_perceptual_loss(tmp_path / "missing.pth")
