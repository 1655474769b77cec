"""The sampling engine returns exactly `sample_raster`'s tokens for the same seed on CPU, its
per-row-position forward agrees with the full causal forward, and its options behave."""

import pytest
import torch
from exact_law import one_thread  # noqa: F401  (autouse fixture)

from artok.generators import RasterConfig, RasterGenerator
from artok.generators.raster.engine import SamplingEngine, sample_raster_fast
from artok.generators.raster.sample import sample_raster
from artok.sampling.configs import SamplerConfig
from artok.tokens import TokenSpec

CONFIGS = [
    SamplerConfig(),
    SamplerConfig(temperature=1.3, top_k=5),
    SamplerConfig(top_p=0.8),
    SamplerConfig(cfg_scale=3.0),
    SamplerConfig(cfg_scale=2.5, cfg_schedule="linear", top_k=8, top_p=0.9, temperature=0.9),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"t{c.temperature}-k{c.top_k}-p{c.top_p}-cfg{c.cfg_scale}{c.cfg_schedule[0]}")
@pytest.mark.parametrize("attention", ["full", "bucketed"])
def test_engine_equals_sample_raster(tiny_generator, config, attention):
    labels = torch.tensor([0, 1, 2, 3, 1])
    engine = SamplingEngine(tiny_generator, 5, attention=attention, bucket_size=4)
    for seed in (0, 1):
        expected = sample_raster(tiny_generator, labels, config, torch.Generator().manual_seed(seed))
        got = engine.sample(labels, config, torch.Generator().manual_seed(seed))
        assert got.spec == expected.spec
        assert torch.equal(got.ids, expected.ids)


def test_engine_longer_grid_and_partial_batch():
    """64 tokens, 4 attention buckets, fewer labels than the engine's batch."""
    spec = TokenSpec("discrete", "grid", grid=(8, 8), vocab_size=33)
    generator = RasterGenerator(RasterConfig(token_spec=spec.to_dict(), num_classes=3, dim=32, depth=2, num_heads=2,
                                             dropout=0.0)).eval()
    config = SamplerConfig(cfg_scale=2.0, top_k=10)
    labels = torch.tensor([2, 0, 1])
    expected = sample_raster(generator, labels, config, torch.Generator().manual_seed(5)).ids
    for attention in ("full", "bucketed"):
        engine = SamplingEngine(generator, 8, attention=attention, bucket_size=16)
        assert torch.equal(engine.sample(labels, config, torch.Generator().manual_seed(5)).ids, expected)
    assert torch.equal(sample_raster_fast(generator, labels, config, torch.Generator().manual_seed(5)).ids, expected)


def test_forward_with_per_row_positions_matches_full_forward(tiny_generator):
    torch.manual_seed(0)
    ids = torch.randint(0, 17, (3, 9))
    labels = torch.tensor([0, 2, 3])
    full = tiny_generator(ids[:, :-1], labels)  # 3 x 9 x V: logits at input positions 0..8
    engine = SamplingEngine(tiny_generator, 3, guidance=False, extra_positions=4, attention="bucketed", bucket_size=4)
    with torch.no_grad():
        first = engine.start(labels, guided=False)
        assert torch.allclose(first, full[:, 0], atol=1e-5)
        # Rows advance by different chunk sizes; input position i carries token i-1.
        lengths = torch.tensor([1, 1, 1])
        for chunk in ([2, 3, 1], [3, 1, 4], [3, 4, 3]):
            chunk = torch.tensor(chunk)
            width = int(chunk.max())
            positions = (lengths[:, None] + torch.arange(width)).clamp(max=8)
            tokens = ids.gather(1, (positions - 1).clamp(min=0))
            logits = engine.forward(tokens, positions, last_position=int(positions.max()))
            for row in range(3):
                for j in range(int(chunk[row])):
                    position = int(positions[row, j])
                    assert torch.allclose(logits[row, j], full[row, position], atol=1e-5)
            lengths = (lengths + chunk).clamp(max=8)


def test_engine_converts_a_copy_and_checks_inputs(tiny_generator):
    engine = SamplingEngine(tiny_generator, 2, dtype=torch.float64)
    assert next(tiny_generator.parameters()).dtype == torch.float32
    assert next(engine.model.parameters()).dtype == torch.float64
    tokens = engine.sample(torch.tensor([1, 2]), SamplerConfig(cfg_scale=2.0), torch.Generator().manual_seed(0))
    assert tokens.ids.shape == (2, 9)
    assert all(block.attention.kv_cache is None for block in tiny_generator.blocks)
    with pytest.raises(ValueError, match="labels"):
        engine.sample(torch.arange(3), SamplerConfig())
    with pytest.raises(ValueError, match="guidance"):
        SamplingEngine(tiny_generator, 2, guidance=False).sample(torch.tensor([0]), SamplerConfig(cfg_scale=2.0))
    with pytest.raises(ValueError, match="attention"):
        SamplingEngine(tiny_generator, 2, attention="sparse")


@pytest.mark.slow
def test_cpu_compile_matches_eager(tiny_generator):
    """torch.compile on CPU (inductor C++, no graphs): same tokens as eager up to kernel rounding."""
    config = SamplerConfig(cfg_scale=2.0, top_k=8)
    labels = torch.tensor([0, 1, 2, 3])
    eager = SamplingEngine(tiny_generator, 4).sample(labels, config, torch.Generator().manual_seed(0)).ids
    compiled = SamplingEngine(tiny_generator, 4, compile=True).sample(labels, config, torch.Generator().manual_seed(0)).ids
    assert (compiled == eager).float().mean() > 0.9


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_engine_compiled_graphs(tiny_generator):
    generator = tiny_generator.cuda()
    labels = torch.tensor([0, 1, 2, 3], device="cuda")
    config = SamplerConfig(cfg_scale=2.0, top_k=8)
    fp32 = SamplingEngine(generator, 4, dtype=torch.float32, compile=False, attention="full")
    expected = sample_raster(generator, labels, config, torch.Generator("cuda").manual_seed(0)).ids
    assert torch.equal(fp32.sample(labels, config, torch.Generator("cuda").manual_seed(0)).ids, expected)
    fast = SamplingEngine(generator, 4)  # bf16, compile, CUDA graphs, bucketed attention
    for _ in range(2):  # the second call replays the captured graphs
        ids = fast.sample(labels, config, torch.Generator("cuda").manual_seed(0)).ids
        assert ids.shape == (4, 9) and int(ids.max()) < 17
