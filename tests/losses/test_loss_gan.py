"""GAN losses: hinge values, LeCam, the adaptive weight, the start step, and the adversarial trainer
(discriminator frozen before its start step, discriminator state resumed from the checkpoint)."""

import pytest
import torch

from artok.data.base import ImageDataset
from artok.losses import (
    AdversarialLoss,
    GANConfig,
    LeCamEMA,
    PatchDiscriminator,
    adaptive_weight,
    hinge_discriminator_loss,
    hinge_generator_loss,
    lecam_regularization,
)
from artok.training import TrainConfig, load_checkpoint, train_tokenizer
from artok.training.tokenizer_trainer import TokenizerLossConfig


def test_hinge_losses_on_hand_cases():
    real = torch.tensor([2.0, 0.5])  # relu(1 - real) = [0, 0.5]
    fake = torch.tensor([-2.0, 0.0])  # relu(1 + fake) = [0, 1]
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx(0.5 * (0.25 + 0.5))
    assert hinge_generator_loss(fake).item() == pytest.approx(1.0)
    # A perfect discriminator (margins met) has zero loss.
    assert hinge_discriminator_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -5.0])).item() == 0.0


def test_lecam_term_and_ema():
    ema = LeCamEMA(decay=0.9)
    ema.update(torch.tensor([1.0, 1.0]), torch.tensor([-1.0, -1.0]))  # first update copies the means
    assert ema.real.item() == pytest.approx(1.0) and ema.fake.item() == pytest.approx(-1.0)
    real = torch.tensor([0.5, -1.5])  # relu(real - (-1)) = [1.5, 0] -> squares mean 1.125
    fake = torch.tensor([0.0, 2.0])  # relu(1 - fake) = [1, 0] -> squares mean 0.5
    assert lecam_regularization(real, fake, ema).item() == pytest.approx(1.625)
    ema.update(torch.tensor([3.0]), torch.tensor([1.0]))
    assert ema.real.item() == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)
    assert ema.fake.item() == pytest.approx(0.9 * -1.0 + 0.1 * 1.0)


def test_adaptive_weight_is_the_grad_norm_ratio():
    layer = torch.nn.Linear(4, 3)
    out = layer(torch.randn(5, 4))
    rec = out.pow(2).mean()
    gen = -(out * torch.tensor([1.0, 2.0, 3.0])).mean()
    weight = adaptive_weight(rec, gen, layer.weight)
    rec_grad = torch.autograd.grad(rec, layer.weight, retain_graph=True)[0]
    gen_grad = torch.autograd.grad(gen, layer.weight, retain_graph=True)[0]
    assert weight.item() == pytest.approx((rec_grad.norm() / (gen_grad.norm() + 1e-4)).item(), rel=1e-5)
    assert not weight.requires_grad
    assert adaptive_weight(rec, gen, layer.weight, max_weight=1e-3).item() == pytest.approx(1e-3)


def test_patch_discriminator_shapes():
    assert PatchDiscriminator(1, 8, num_layers=2)(torch.zeros(2, 1, 28, 28)).shape == (2, 1, 5, 5)
    assert PatchDiscriminator(3, 8, num_layers=3)(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 6, 6)


def test_start_step_gates_both_players():
    adversarial = AdversarialLoss(GANConfig(start_step=5, discriminator_channels=8, discriminator_layers=1, adaptive_weight=False), 1)
    fake = torch.rand(2, 1, 8, 8, requires_grad=True)
    real = torch.rand(2, 1, 8, 8)
    rec = fake.pow(2).mean()
    before = adversarial.generator_loss(fake, rec, None, step=4)
    assert before["loss"].item() == 0.0 and not adversarial.active(4)
    assert adversarial.discriminator_loss(real, fake, step=4)["loss"].item() == 0.0
    after = adversarial.generator_loss(fake, rec, None, step=5)
    assert adversarial.active(5) and after["loss"].item() != 0.0
    assert after["loss"].item() == pytest.approx(0.1 * after["generator_adversarial"].item())
    assert adversarial.discriminator_loss(real, fake, step=5)["loss"].item() > 0


# --- the adversarial trainer ----------------------------------------------------------------


def _dataset(n: int = 16) -> ImageDataset:
    images = (torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    return ImageDataset(images, torch.zeros(n, dtype=torch.long), ["x"], "tiny", "train")


def _tokenizer():
    from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig

    torch.manual_seed(0)
    return CNNTokenizer(CNNTokenizerConfig(image_size=8, base_channels=8, channel_multipliers=(1, 2), latent_dim=8,
                                           quantizer="fsq", quantizer_options={"levels": [5, 5, 5]}))


GAN = GANConfig(weight=0.5, start_step=2, discriminator_channels=8, discriminator_layers=1, lecam_weight=0.01)


def test_trainer_respects_discriminator_start_step(tmp_path):
    config = TrainConfig(steps=2, batch_size=4, lr=1e-3, warmup_steps=1, log_every=1, progress=False)
    result = train_tokenizer(_tokenizer(), _dataset(), config, out_dir=tmp_path, losses=TokenizerLossConfig(adversarial=GAN))
    assert all(h["discriminator_loss"] == 0.0 and h["adaptive_weight"] == 0.0 for h in result.history)
    torch.manual_seed(config.seed)  # the trainer builds the discriminator right after seeding
    untouched = AdversarialLoss(GAN, 1).state_dict()
    saved = load_checkpoint(tmp_path / "checkpoint.pt")["discriminator"]
    assert all(torch.equal(untouched[k], saved[k]) for k in untouched)

    longer = TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=1, log_every=1, progress=False)
    result = train_tokenizer(_tokenizer(), _dataset(), longer, losses=TokenizerLossConfig(adversarial=GAN))
    assert [h["discriminator_loss"] > 0 for h in result.history] == [False, False, True, True]
    assert result.history[-1]["adaptive_weight"] > 0


class _Crash(RuntimeError):
    pass


def test_adversarial_training_resumes_with_its_discriminator(tmp_path, monkeypatch):
    config = TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=1, log_every=1, checkpoint_every=2, progress=False)
    losses = TokenizerLossConfig(adversarial=GANConfig(**{**GAN.__dict__, "start_step": 1}))
    full = train_tokenizer(_tokenizer(), _dataset(), config, out_dir=tmp_path / "full", losses=losses)

    import artok.training.loop as trainer  # where checkpoints are written

    original = trainer.save_checkpoint

    def save_then_crash(path, state):
        original(path, state)
        if state["step"] == 2:
            raise _Crash()

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_crash)
    with pytest.raises(_Crash):
        train_tokenizer(_tokenizer(), _dataset(), config, out_dir=tmp_path / "half", losses=losses)
    monkeypatch.setattr(trainer, "save_checkpoint", original)
    assert "discriminator_optimizer" in load_checkpoint(tmp_path / "half" / "checkpoint.pt")
    torch.manual_seed(99)
    resumed = train_tokenizer(_tokenizer(), _dataset(), config, out_dir=tmp_path / "half", resume=True, losses=losses)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], abs=1e-6)
    assert [h["discriminator_loss"] for h in resumed.history] == pytest.approx(
        [h["discriminator_loss"] for h in full.history], abs=1e-6)
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["discriminator"]
    b = load_checkpoint(tmp_path / "half" / "checkpoint.pt")["discriminator"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_default_trainer_path_is_unchanged():
    """No losses argument: the shared loop, with exactly the old MSE + 0.2 L1 + quantizer objective."""
    import torch.nn.functional as F

    config = TrainConfig(steps=1, batch_size=4, lr=1e-3, warmup_steps=1, log_every=1, progress=False)
    tokenizer = _tokenizer()
    torch.manual_seed(config.seed)
    from artok.training.loop import batch_indices

    images, _ = _dataset().batch(batch_indices(16, 4, 0, config.seed))
    with torch.no_grad():
        out = tokenizer.train()(images)
        expected = F.mse_loss(out.reconstruction, images) + 0.2 * F.l1_loss(out.reconstruction, images) + out.quantizer.loss
    result = train_tokenizer(tokenizer, _dataset(), config)
    assert result.history[0]["loss"] == pytest.approx(expected.item(), rel=1e-6)
    assert "discriminator_loss" not in result.history[0]
