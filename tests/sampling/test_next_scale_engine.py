"""The next-scale engine: the same tokens as `sample_next_scale` for the same seed (eager, CPU),
near-identical when compiled on CPU, and the CUDA path (compile + graphs + bf16) close to fp32."""

import pytest
import torch

from artok.generators.next_scale.engine import NextScaleEngine, sample_next_scale_fast
from artok.generators.next_scale.sample import sample_next_scale
from artok.sampling import NextScaleSamplerConfig

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = [
    NextScaleSamplerConfig(cfg_schedule="constant"),
    NextScaleSamplerConfig(temperature=1.3, top_k=5, cfg_scale=1.0),
    NextScaleSamplerConfig(cfg_scale=2.5, cfg_schedule="linear", top_k=8, top_p=0.9, temperature=0.9),
]


@pytest.mark.parametrize("config", CONFIGS, ids=["constant", "unguided-topk", "linear-topk-topp"])
def test_engine_equals_plain_sampler(zoo_generator, config):
    generator = zoo_generator("next-scale")
    engine = NextScaleEngine(generator, 5, guidance=config.uses_cfg)
    for labels, seed in ((torch.tensor([0, 1, 2, 3, 1]), 0), (torch.tensor([2, 0]), 1), (torch.tensor([3, 3, 0, 1, 2]), 2)):
        plain = sample_next_scale(generator, labels, config, torch.Generator().manual_seed(seed))
        fast = engine.sample(labels, config, torch.Generator().manual_seed(seed))
        assert fast.spec == plain.spec and torch.equal(fast.ids, plain.ids)
    assert all(block.attention.kv_cache is None for block in generator.blocks)  # nothing left attached


def test_engine_errors(zoo_generator):
    generator = zoo_generator("next-scale")
    with pytest.raises(ValueError, match="batch_size"):
        NextScaleEngine(generator, 0)
    engine = NextScaleEngine(generator, 2, guidance=False)
    with pytest.raises(ValueError, match="guidance=False"):
        engine.sample(torch.tensor([0]), NextScaleSamplerConfig(cfg_scale=2.0))
    with pytest.raises(ValueError, match="1..2 entries"):
        engine.sample(torch.tensor([0, 1, 2]), NextScaleSamplerConfig(cfg_scale=1.0))
    with pytest.raises(ValueError, match="categorical"):
        NextScaleEngine(zoo_generator("next-scale", head="bitwise"), 2)


def test_cpu_compile_matches_eager(zoo_generator):
    """torch.compile on CPU (inductor C++, no graphs): same tokens up to kernel rounding."""
    generator = zoo_generator("next-scale")
    config = NextScaleSamplerConfig(cfg_scale=2.0, top_k=8)
    labels = torch.tensor([0, 1, 2, 3])
    eager = sample_next_scale(generator, labels, config, torch.Generator().manual_seed(0)).ids
    compiled = sample_next_scale_fast(generator, labels, config, torch.Generator().manual_seed(0), compile=True).ids
    assert (compiled == eager).float().mean() > 0.9


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_engine_compiled_graphs(zoo_generator):
    generator = zoo_generator("next-scale").cuda()
    config = NextScaleSamplerConfig(cfg_scale=2.0)
    labels = torch.arange(4, device="cuda")
    fp32 = NextScaleEngine(generator, 4, dtype=torch.float32, compile=False).sample(
        labels, config, torch.Generator("cuda").manual_seed(0)).ids
    fast = NextScaleEngine(generator, 4)  # bf16, compile, CUDA graphs
    assert fast.cuda_graphs and fast.dtype == torch.bfloat16
    first = fast.sample(labels, config, torch.Generator("cuda").manual_seed(0)).ids
    again = fast.sample(labels, config, torch.Generator("cuda").manual_seed(0)).ids  # graph replay
    assert torch.equal(first, again)
    assert (first == fp32).float().mean() > 0.5  # bf16 flips some draws; most agree
