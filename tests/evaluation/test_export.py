"""`artok.evaluation.export` without a generator: a fake sampler (images depend on labels and seed)
checks the plan, the seed stream per shard, the streamed ADM .npz and the argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from artok.evaluation.export import ExportPlan, balanced_labels, export_samples, shard_seed


def fake_sample(labels: torch.Tensor, seed: int, batch_size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(labels.shape[0], 1, 5, 4, generator=generator)
    return (noise + labels.view(-1, 1, 1, 1)) / 2 - 1


def test_labels_cycle_and_seeds_differ_per_shard():
    assert balanced_labels(7, [0, 1, 2]) == [0, 1, 2, 0, 1, 2, 0]
    assert len({shard_seed(0, shard) for shard in range(100)}) == 100
    assert shard_seed(0, 1) != shard_seed(1, 0) and shard_seed(3, 2) == shard_seed(3, 2)
    with pytest.raises(ValueError, match="at least one image"):
        balanced_labels(0, [0])


def test_export_npz_equals_concatenated_shards(tmp_path):
    plan = ExportPlan(tuple(balanced_labels(7, [0, 1, 2])), shard_size=3, seed=5, batch_size=2)
    result = export_samples(fake_sample, plan, tmp_path, ("npz",), progress=False)
    with np.load(result["npz"]) as file:
        images, labels = file["arr_0"], file["arr_1"]
    assert images.shape == (7, 5, 4, 3) and images.dtype == np.uint8 and labels.tolist() == list(plan.labels)
    expected = [fake_sample(torch.tensor(plan.shard_labels(s)), shard_seed(5, s), 2) for s in range(3)]
    pixels = ((torch.cat(expected).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert np.array_equal(images, pixels.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy())
    assert result["sampled_images"] == 7 and result["skipped_shards"] == 0


def test_plan_and_format_checks(tmp_path):
    with pytest.raises(ValueError, match="shard-size"):
        ExportPlan((0,), shard_size=0)
    with pytest.raises(ValueError, match="formats"):
        export_samples(fake_sample, ExportPlan((0,)), tmp_path, ("jpeg",), progress=False)
    with pytest.raises(RuntimeError, match="returned 1 images for 2 labels"):
        export_samples(lambda labels, seed, size: fake_sample(labels[:1], seed, size), ExportPlan((0, 1)), tmp_path / "x",
                       ("npz",), progress=False)
