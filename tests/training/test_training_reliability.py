"""Nothing lost: EMA keeps integer buffers exact, non-finite steps are skipped and never
checkpointed, periodic checkpoints (by steps and minutes, ``keep`` of them), stale temporary
files cleared, resume without a checkpoint says so, files respect the umask."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from artok_test_helpers import (
    NATURAL,
    TOKENIZERS,
    fast_sampler,
    options_for,
    structured_tokens,
)

from artok.hub import from_pretrained, remove_stale_temporaries, save_pretrained
from artok.training import TrainConfig, load_checkpoint, train, train_generator
from artok.training.loop import TrainingDiverged, TrainingWarning
from artok.zoo import GENERATOR_KINDS, build_generator, sample


def _integer_buffers(model):
    return {name: buffer.clone() for name, buffer in model.named_buffers() if not buffer.is_floating_point()}


@pytest.mark.parametrize("decay", [0.9, 0.9999])
@pytest.mark.parametrize("kind", GENERATOR_KINDS)
def test_ema_keeps_integer_buffers_and_matches_its_saved_copy(kind, decay, tmp_path):
    torch.manual_seed(0)
    tokenizer = TOKENIZERS[NATURAL[kind]]()
    options = options_for(kind)
    if kind == "next-x":
        options.update(unit="cell", cell_size=2)  # the unit_index table that drifted under EMA
    generator = build_generator(kind, tokenizer, num_classes=3, **options)
    labels = torch.arange(3).repeat(8)
    tokens = structured_tokens(tokenizer.spec, labels)
    before = _integer_buffers(generator)
    config = TrainConfig(steps=6, batch_size=8, lr=1e-3, warmup_steps=1, ema_decay=decay, progress=False)
    result = train_generator(generator, tokens, labels, config)
    final = result.final_model.eval()
    for name, buffer in _integer_buffers(final).items():
        assert torch.equal(buffer, before[name]), f"{kind}: EMA changed integer buffer {name}"
    save_pretrained(final, tmp_path / kind)
    loaded = from_pretrained(tmp_path / kind)
    for name, buffer in loaded.named_buffers():
        assert torch.equal(buffer, dict(final.named_buffers())[name]), name
    sampler = fast_sampler(final)
    a = sample(final, torch.tensor([0, 2]), sampler, torch.Generator().manual_seed(5))
    b = sample(loaded, torch.tensor([0, 2]), sampler, torch.Generator().manual_seed(5))
    assert torch.equal(a.data, b.data)


def _poisoned_loss(poison_steps):
    """A loss that stays finite while its gradient is inf at ``poison_steps`` (sqrt at 0)."""
    target = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))

    def loss_fn(model, step):
        loss = ((model(target) - target) ** 2).mean()
        if step in poison_steps:
            weight = model.weight
            loss = loss + torch.sqrt((weight - weight.detach()).abs()).sum()  # value 0, gradient inf
        return {"loss": loss, "batch_size": 16}

    return loss_fn


def test_finite_loss_with_non_finite_gradient_is_skipped_not_applied(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    config = TrainConfig(steps=6, batch_size=16, lr=1e-2, warmup_steps=0, log_every=1, checkpoint_every=1,
                         progress=False)
    snapshots = {}

    def loss_fn(model, step):
        snapshots[step] = model.weight.detach().clone()
        return _poisoned_loss({3})(model, step)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(model, loss_fn, config, out_dir=tmp_path)
    assert torch.equal(snapshots[3], snapshots[4]), "the poisoned step changed the weights"
    assert any("step 4 skipped" in str(w.message) and "gradient norm is" in str(w.message) for w in caught)
    assert [h.get("skipped") is not None for h in result.history] == [False, False, False, True, False, False]
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 6 and state["skipped_steps"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_divergence_stops_with_one_line_and_keeps_the_last_finite_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    config = TrainConfig(steps=20, batch_size=16, lr=1e-2, warmup_steps=0, checkpoint_every=2, max_skipped_steps=3,
                         progress=False)
    with pytest.raises(TrainingDiverged) as error, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(model, _poisoned_loss(set(range(5, 20))), config, out_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message and "at step 9" in message and "step 4" in message and "--lr" in message
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 4 and all(torch.isfinite(t).all() for t in state["model"].values())


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    config = TrainConfig(steps=4, batch_size=16, lr=1e-2, warmup_steps=0, checkpoint_every=2, progress=False)
    target = torch.randn(16, 4)

    def loss_fn(model, step):
        if step == 3:  # finite loss and gradient, but the weights are already broken
            with torch.no_grad():
                model.bias[0] = float("inf")
            return {"loss": (model.weight ** 2).sum(), "batch_size": 16}
        return {"loss": ((model(target) - target) ** 2).mean(), "batch_size": 16}

    with pytest.raises(TrainingDiverged, match="weights became non-finite by step 4.*step 2"):
        train(model, loss_fn, config, out_dir=tmp_path)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2


def _tiny_run(tmp_path, resume=False, **overrides):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    settings = dict(steps=10, batch_size=16, lr=1e-2, warmup_steps=0, progress=False)
    settings.update(overrides)
    return train(model, _poisoned_loss(set()), TrainConfig(**settings), out_dir=tmp_path, resume=resume)


def test_keep_retains_the_newest_checkpoints_as_hard_links(tmp_path):
    _tiny_run(tmp_path, checkpoint_every=2, keep=3)
    kept = sorted(p.name for p in tmp_path.glob("checkpoint-*.pt"))
    assert kept == ["checkpoint-00000006.pt", "checkpoint-00000008.pt", "checkpoint-00000010.pt"]
    assert os.path.samefile(tmp_path / "checkpoint.pt", tmp_path / "checkpoint-00000010.pt")
    assert load_checkpoint(tmp_path / "checkpoint-00000006.pt")["step"] == 6


def test_time_based_checkpoints(tmp_path, monkeypatch):
    import artok.training.loop as loop

    clock = iter(range(0, 10_000, 61))  # every call to perf_counter advances a minute
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(clock)))
    written = []
    original = loop.save_checkpoint
    monkeypatch.setattr(loop, "save_checkpoint", lambda path, state: (written.append(state["step"]), original(path, state)))
    _tiny_run(tmp_path, checkpoint_minutes=1.0)
    assert len(written) > 2 and written[-1] == 10


def test_resume_falls_back_to_an_older_kept_checkpoint_and_cleans_temporaries(tmp_path):
    _tiny_run(tmp_path, checkpoint_every=5, keep=2)
    (tmp_path / "checkpoint.pt").unlink()
    (tmp_path / "checkpoint-00000010.pt").write_bytes(b"torn")
    (tmp_path / ".checkpoint.pt.abc123xy").write_bytes(b"left by a kill")
    (tmp_path / ".checkpoint.pt.k2j3h4g5.tmp").write_bytes(b"left by a kill")
    with pytest.warns(TrainingWarning, match="resumed from checkpoint-00000005.pt"):
        result = _tiny_run(tmp_path, resume=True, checkpoint_every=5, keep=2, steps=12, log_every=1)
    assert [h["step"] for h in result.history][-7:] == list(range(6, 13))  # continued after step 5
    assert not list(tmp_path.glob(".checkpoint*"))


def test_resume_with_nothing_to_resume_says_so(tmp_path):
    with pytest.warns(TrainingWarning, match="nothing to resume"):
        torch.manual_seed(0)
        train(torch.nn.Linear(4, 4), _poisoned_loss(set()), TrainConfig(steps=2, batch_size=4, progress=False),
              out_dir=tmp_path, resume=True)


def test_remove_stale_temporaries_spares_other_files(tmp_path):
    for name in (".model.safetensors.x1y2z3ab.tmp", ".config.json.q9w8e7r6.tmp", ".gitignore", "model.safetensors"):
        (tmp_path / name).write_text("x")
    assert remove_stale_temporaries(tmp_path, ("model.safetensors", "config.json")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore", "model.safetensors"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_respect_the_umask(umask, tmp_path, tiny_generator):
    previous = os.umask(umask)
    try:
        save_pretrained(tiny_generator, tmp_path / "g")
        _tiny_run(tmp_path / "run", steps=2)
    finally:
        os.umask(previous)
    for path in [tmp_path / "g" / "model.safetensors", tmp_path / "g" / "config.json", tmp_path / "run" / "checkpoint.pt",
                 tmp_path / "run" / "history.json"]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_tensorboard_events_are_written(tmp_path):
    pytest.importorskip("tensorboard")
    _tiny_run(tmp_path, log_every=1)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


