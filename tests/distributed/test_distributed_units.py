"""The pieces of artok.distributed that need no second process: shards, torchrun's environment,
rank-tagged errors, parallelize's wrappers (activation checkpointing keeps state-dict names and
outputs), the sharded EMA's rule, and the dry-run planner."""

from __future__ import annotations

import json

import pytest
import torch
from artok_test_helpers import tiny_tokenizer

from artok.cli.main import main
from artok.distributed import ParallelConfig, Shard, distributed_run, global_batch_indices, init_distributed, parallelize
from artok.distributed.env import DistributedEnv
from artok.training.ema import ShardedEMA
from artok.zoo import build_generator


def test_ranks_and_micro_steps_partition_the_global_batch():
    whole = global_batch_indices(100, 16, 3, seed=1)
    parts = [m for rank in range(2) for m in Shard(rank, 2, 2).indices(100, 4, 3, seed=1)]
    assert torch.equal(torch.cat(parts), whole)
    epoch = torch.cat([global_batch_indices(100, 16, step, 1) for step in range(6)])  # 6 = 100 // 16 steps
    assert len(set(epoch.tolist())) == 96  # no repeat within an epoch; the remainder of 4 waits
    with pytest.raises(ValueError, match="does not split"):
        Shard(0, 3).rank_slice(torch.arange(8))
    with pytest.raises(ValueError, match="not in a world"):
        Shard(2, 2)


def test_torchrun_environment_is_read_and_checked(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed("cpu") == DistributedEnv()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match="do not fit"):
        init_distributed("cpu")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        init_distributed("cpu")


def test_errors_of_a_multi_process_run_name_their_rank(monkeypatch):
    monkeypatch.setattr("artok.distributed.env.init_distributed", lambda device: DistributedEnv(1, 2))
    with pytest.raises(ValueError, match=r"^rank 1: bad option$"):
        with distributed_run("cpu"):
            raise ValueError("bad option")


def test_activation_checkpointing_keeps_names_outputs_and_gradients():
    tokenizer = tiny_tokenizer("vq", {"codebook_size": 16, "codebook_dim": 4})
    torch.manual_seed(0)
    plain = build_generator("raster", tokenizer, 10, dim=32, depth=2, num_heads=2, class_dropout=0.0, dropout=0.0)
    wrapped = build_generator("raster", tokenizer, 10, dim=32, depth=2, num_heads=2, class_dropout=0.0, dropout=0.0)
    wrapped.load_state_dict(plain.state_dict())
    names = list(plain.state_dict())
    view = parallelize(wrapped, ParallelConfig(activation_checkpointing=True)).view()
    assert list(wrapped.state_dict()) == names  # checkpoints stay loadable either way
    assert "CheckpointWrapper" in type(wrapped.blocks[0]).__name__
    tokens = tokenizer.encode(torch.rand(4, 1, 8, 8) * 2 - 1)
    labels = torch.arange(4)
    a, b = plain.loss(tokens, labels)["loss"], view.loss(tokens, labels)["loss"]
    a.backward()
    b.backward()
    assert torch.equal(a, b)
    for p, q in zip(plain.parameters(), wrapped.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)


def test_sharded_ema_follows_averaged_model():
    from torch.optim.swa_utils import AveragedModel

    from artok.training.config import ema_multi_avg_fn

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    reference = AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(0.9), use_buffers=True)
    ema = ShardedEMA(model, 0.9)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(4, 3))  # moves the BatchNorm buffers (and its integer counter)
        reference.update_parameters(model)
        ema.update_parameters(model)
    expected = reference.state_dict()
    got = ema.state_dict()
    assert set(got) == set(expected)
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def test_dry_run_reports_memory_per_gpu_without_training(capsys, tmp_path):
    code = main(["train-generator", "--preset", "gpt-b", "--dry-run", "--dry-run-steps", "0", "--world-size", "8"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and "trial" not in report
    ddp, fsdp = report["estimate"]["ddp"], report["estimate"]["fsdp"]
    assert ddp["parameters"] == 110_888_448  # LlamaGen's GPT-B: 111M
    assert ddp["per_gpu_batch"] == 32 and ddp["global_batch"] == 256
    assert fsdp["weights_grads_optimizer_ema_gib"] < ddp["weights_grads_optimizer_ema_gib"] / 4
    assert ddp["activations_gib"] > 0 and ddp["activations_measured_by"] == "meta"


def test_training_commands_still_require_their_folders(capsys):
    assert main(["train-generator", "--out", "x"]) == 2
    assert "required: --tokenizer" in capsys.readouterr().err
    assert main(["train-generator", "--dry-run"]) == 2


def test_resuming_with_another_global_batch_says_the_order_changes(tmp_path):
    from artok_test_helpers import structured_tokens

    from artok.training import TrainConfig, train_generator
    from artok.training.config import TrainingWarning

    tokenizer = tiny_tokenizer("vq", {"codebook_size": 16, "codebook_dim": 4})
    labels = torch.arange(32) % 10
    tokens = structured_tokens(tokenizer.spec, labels)

    def run(steps, batch, **extra):
        torch.manual_seed(0)
        model = build_generator("raster", tokenizer, 10, dim=32, depth=1, num_heads=2)
        config = TrainConfig(steps=steps, batch_size=batch, warmup_steps=1, progress=False, checkpoint_every=2, **extra)
        return train_generator(model, tokens, labels, config, out_dir=tmp_path, resume=True)

    with pytest.warns(TrainingWarning, match="nothing to resume"):
        run(2, 8)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingWarning)
        run(4, 4, grad_accum=2)  # 4 x 2 = 8: the same batches, silently
    with pytest.warns(TrainingWarning, match="global batch of 4 .*had 8"):
        run(6, 4)
