"""The MaskGIT engine: the same tokens and masked counts as `sample_maskgit` for the same seed (eager,
CPU), near-identical when compiled on CPU, and the CUDA path (compile + graphs + bf16) close to fp32."""

import pytest
import torch

from artok.generators.maskgit.engine import MaskGITEngine
from artok.generators.maskgit.sample import sample_maskgit
from artok.sampling import MaskGITSamplerConfig

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = [
    MaskGITSamplerConfig(iterations=4),
    MaskGITSamplerConfig(iterations=5, cfg_scale=2.5, cfg_schedule="linear", top_k=6, temperature=0.8),
    MaskGITSamplerConfig(iterations=3, cfg_scale=2.0, top_p=0.8, choice_temperature=0.0, mask_schedule="linear"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=["plain", "cfg-linear-topk", "cfg-topp-linear-schedule"])
def test_engine_equals_plain_sampler(zoo_generator, config):
    generator = zoo_generator("maskgit")
    engine = MaskGITEngine(generator, 5, guidance=config.uses_cfg)
    for labels, seed in ((torch.tensor([0, 1, 2, 3, 1]), 0), (torch.tensor([2, 0]), 1)):
        plain = sample_maskgit(generator, labels, config, torch.Generator().manual_seed(seed))
        fast = engine.sample(labels, config, torch.Generator().manual_seed(seed))
        assert torch.equal(fast.ids, plain.ids)
        assert fast.extras == plain.extras


def test_engine_errors(zoo_generator):
    with pytest.raises(ValueError, match="batch_size"):
        MaskGITEngine(zoo_generator("maskgit"), 0)
    engine = MaskGITEngine(zoo_generator("maskgit"), 2, guidance=False)
    with pytest.raises(ValueError, match="guidance=False"):
        engine.sample(torch.tensor([0]), MaskGITSamplerConfig(cfg_scale=2.0))
    with pytest.raises(ValueError, match="1..2 entries"):
        engine.sample(torch.tensor([0, 1, 2]), MaskGITSamplerConfig())


def test_cpu_compile_matches_eager(zoo_generator):
    """Compiled on CPU (inductor, one graph per iteration: the re-masked count is static)."""
    generator = zoo_generator("maskgit")
    config = MaskGITSamplerConfig(iterations=2, cfg_scale=2.0)
    labels = torch.tensor([0, 1, 2, 3])
    eager = sample_maskgit(generator, labels, config, torch.Generator().manual_seed(0)).ids
    compiled = MaskGITEngine(generator, 4, compile=True).sample(labels, config, torch.Generator().manual_seed(0)).ids
    assert (compiled == eager).float().mean() > 0.9


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_engine_compiled_graphs(zoo_generator):
    generator = zoo_generator("maskgit").cuda()
    config = MaskGITSamplerConfig(iterations=4, cfg_scale=2.0)
    labels = torch.arange(4, device="cuda")
    fp32 = MaskGITEngine(generator, 4, dtype=torch.float32, compile=False).sample(
        labels, config, torch.Generator("cuda").manual_seed(0)).ids
    fast = MaskGITEngine(generator, 4)
    assert fast.cuda_graphs and fast.dtype == torch.bfloat16
    first = fast.sample(labels, config, torch.Generator("cuda").manual_seed(0))
    again = fast.sample(labels, config, torch.Generator("cuda").manual_seed(0))
    assert torch.equal(first.ids, again.ids) and first.extras["masked_per_step"][-1] == 0
    assert (first.ids == fp32).float().mean() > 0.5
