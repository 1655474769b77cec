"""Checkpoints: atomic writes, safe loading, and a resumed run that follows the same trajectory."""

import os

import pytest
import torch

from artok.tokens import Tokens
from artok.training import (
    TrainConfig,
    load_checkpoint,
    save_checkpoint,
    train_generator,
)


def _tokens_and_labels(spec, n=64):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, spec.vocab_size, (n, spec.seq_len), generator=generator)
    return Tokens(spec, ids=ids), torch.randint(0, 4, (n,), generator=generator)


def _fresh(tiny_generator):
    from artok.generators import RasterGenerator

    torch.manual_seed(0)
    model = RasterGenerator(tiny_generator.config)
    model.config.dropout = 0.0
    return model


def test_resume_continues_the_same_loss_trajectory(tiny_generator, tmp_path):
    tokens, labels = _tokens_and_labels(tiny_generator.spec)
    config = TrainConfig(steps=12, batch_size=16, lr=3e-3, warmup_steps=3, log_every=1, ema_decay=0.9,
                         checkpoint_every=6, progress=False)
    full = train_generator(_fresh(tiny_generator), tokens, labels, config, out_dir=tmp_path / "full")

    # Interrupted run: crash right after the checkpoint at step 6 is written.
    with pytest.raises(_Interrupted):
        _train_with_crash_after(6, _fresh(tiny_generator), tokens, labels, config, tmp_path / "half")
    assert load_checkpoint(tmp_path / "half" / "checkpoint.pt")["step"] == 6

    # Resume into a fresh model object, with torch's global RNG disturbed in between.
    torch.manual_seed(1234)
    resumed = train_generator(_fresh(tiny_generator), tokens, labels, config, out_dir=tmp_path / "half", resume=True)
    full_losses = [h["loss"] for h in full.history]
    resumed_losses = [h["loss"] for h in resumed.history]
    assert len(resumed_losses) == 12
    assert resumed_losses == pytest.approx(full_losses, abs=1e-6)
    for a, b in zip(full.final_model.state_dict().values(), resumed.final_model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


class _Interrupted(RuntimeError):
    pass


def _train_with_crash_after(step, model, tokens, labels, config, out_dir):
    """Run train_generator but raise once the checkpoint of ``step`` is written (a simulated crash)."""
    import artok.training.loop as loop

    original = loop.save_checkpoint

    def save_then_crash(path, state):
        original(path, state)
        if state["step"] == step:
            raise _Interrupted()

    loop.save_checkpoint = save_then_crash
    try:
        return train_generator(model, tokens, labels, config, out_dir=out_dir)
    finally:
        loop.save_checkpoint = original


def test_checkpoint_is_atomic_and_safe(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 3, "weights": torch.ones(2)})
    assert load_checkpoint(path)["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp files left behind

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable artok checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_generator_loss_decreases(tiny_generator):
    tokens, labels = _tokens_and_labels(tiny_generator.spec, n=32)
    # A learnable signal: token ids depend on the label.
    tokens = Tokens(tokens.spec, ids=(labels[:, None] * 3 + torch.arange(9)) % 17)
    result = train_generator(_fresh(tiny_generator), tokens, labels,
                             TrainConfig(steps=60, batch_size=16, lr=3e-3, warmup_steps=5, log_every=5, progress=False))
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]
