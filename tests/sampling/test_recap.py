"""ReCAP on MaskGIT: full steps are MaskGIT's steps (group size 1 = sample_maskgit, token for
token); a local step with an unchanged context reproduces the full evaluation; groups save passes."""

import pytest
import torch
from exact_law import one_thread  # noqa: F401  (autouse fixture)

from artok.generators.masked import MaskGITConfig, MaskGITGenerator
from artok.sampling import MaskGITSamplerConfig, sample_maskgit
from artok.sampling.recap import _FeatureCache, full_hidden, local_hidden, sample_maskgit_recap
from artok.tokens import TokenSpec


@pytest.fixture
def maskgit():
    torch.manual_seed(0)
    spec = TokenSpec("discrete", "grid", grid=(4, 4), vocab_size=17)
    return MaskGITGenerator(MaskGITConfig(token_spec=spec.to_dict(), num_classes=4, dim=32, depth=2, num_heads=2,
                                          dropout=0.0)).eval()


CONFIGS = [MaskGITSamplerConfig(iterations=6), MaskGITSamplerConfig(iterations=5, cfg_scale=2.0, top_k=8)]


@pytest.mark.parametrize("config", CONFIGS, ids=["plain", "cfg-topk"])
def test_group_size_one_is_maskgit(maskgit, config):
    labels = torch.tensor([0, 1, 3])
    expected = sample_maskgit(maskgit, labels, config, torch.Generator().manual_seed(2)).ids
    got = sample_maskgit_recap(maskgit, labels, config, torch.Generator().manual_seed(2), group_size=1)
    assert torch.equal(got.ids, expected)
    assert got.extras == {"full_evaluations": config.iterations, "local_evaluations": 0}


def test_local_evaluation_with_unchanged_context_matches_full(maskgit):
    ids = torch.randint(0, 17, (2, 16))
    mask = torch.rand(2, 16) < 0.5
    labels = torch.tensor([1, 2])
    with torch.no_grad(), _FeatureCache(maskgit, 2):
        full = full_hidden(maskgit, ids, mask, labels)
        assert torch.allclose(full, maskgit.hidden_states(ids, mask, labels), atol=1e-6)
        active = torch.tensor([[3, 7, 11], [0, 5, 15]])
        local = local_hidden(maskgit, ids, mask, active)
    assert torch.allclose(local, full.gather(1, active[..., None].expand(-1, -1, 32)), atol=1e-5)


@pytest.mark.parametrize("config", CONFIGS, ids=["plain", "cfg-topk"])
def test_groups_use_local_evaluations(maskgit, config):
    labels = torch.tensor([0, 1, 2, 3])
    out = sample_maskgit_recap(maskgit, labels, config, torch.Generator().manual_seed(0), group_size=3)
    assert out.ids.shape == (4, 16) and int(out.ids.min()) >= 0 and int(out.ids.max()) < 17
    assert out.extras["full_evaluations"] == -(-config.iterations // 3)
    assert out.extras["local_evaluations"] >= 1
    assert all(block.attention.kv_cache is None for block in maskgit.blocks)
    with pytest.raises(ValueError, match="group_size"):
        sample_maskgit_recap(maskgit, labels, config, group_size=0)
