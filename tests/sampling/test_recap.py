"""ReCAP on MaskGIT: full steps are MaskGIT's steps (group size 1 = sample_maskgit, token for
token); a local step with an unchanged context reproduces the full evaluation; groups save passes."""

import pytest
import torch
from exact_law import one_thread  # noqa: F401  (autouse fixture)

from artok.generators.maskgit.model import MaskGITConfig, MaskGITGenerator
from artok.generators.maskgit.recap import (
    sample_maskgit_recap,
)
from artok.generators.maskgit.sample import sample_maskgit
from artok.sampling import MaskGITSamplerConfig
from artok.sampling.recap import FeatureCache
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
    with torch.no_grad(), FeatureCache(maskgit, 2):
        full = maskgit.hidden_states(ids, mask, labels, write_cache=True)
        assert torch.allclose(full, maskgit.hidden_states(ids, mask, labels), atol=1e-6)
        active = torch.tensor([[3, 7, 11], [0, 5, 15]])
        local = maskgit.local_hidden_states(ids, mask, active)
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


# -- MAR ------------------------------------------------------------------------------------------
from artok.generators import MARConfig, MARGenerator  # noqa: E402
from artok.generators.mar.recap import (
    sample_mar_recap,
)
from artok.generators.mar.sample import sample_mar
from artok.sampling import MARSamplerConfig


@pytest.fixture(params=["swiglu", "timm"])
def mar(request):
    """artok's blocks and MAR's own (``block="timm"``: timm blocks, LayerNorm, ``z_proj_ln``)."""
    torch.manual_seed(0)
    spec = TokenSpec("continuous", "grid", grid=(4, 4), channels=3)
    model = MARGenerator(MARConfig(token_spec=spec.to_dict(), num_classes=4, dim=32, encoder_depth=2, num_heads=2,
                                   head_width=16, head_depth=1, block=request.param)).eval()
    with torch.no_grad():  # position tables are ~0 at init; make the states depend on them
        for name, param in model.named_parameters():
            if "position" in name or name == "mask_token":
                param.normal_()
    return model


MAR_CONFIGS = [MARSamplerConfig(iterations=6, steps=3), MARSamplerConfig(iterations=5, steps=2, cfg_scale=2.0)]


@pytest.mark.parametrize("config", MAR_CONFIGS, ids=["plain", "cfg"])
def test_mar_group_size_one_is_mar(mar, config):
    labels = torch.tensor([0, 1, 3])
    expected = sample_mar(mar, labels, config, torch.Generator().manual_seed(2)).values
    got = sample_mar_recap(mar, labels, config, torch.Generator().manual_seed(2), group_size=1)
    assert torch.allclose(got.values, expected, atol=1e-5)
    assert got.extras == {"full_evaluations": config.iterations, "local_evaluations": 0}


def test_mar_local_evaluation_with_unchanged_context_matches_full(mar):
    values = torch.randn(2, 16, 3)
    mask = torch.rand(2, 16) < 0.5
    labels = torch.tensor([1, 2])
    with torch.no_grad(), FeatureCache(mar, 2, mar.encoder, mar.config.buffer_size + 16):
        full = mar.condition_vectors(values, mask, labels, write_cache=True)
        assert torch.allclose(full, mar.condition_vectors(values, mask, labels), atol=1e-5)
        active = torch.tensor([[3, 7, 11], [0, 5, 15]])
        local = mar.local_condition_vectors(values, mask, active)
    assert torch.allclose(local, full.gather(1, active[..., None].expand(-1, -1, 32)), atol=1e-5)


@pytest.mark.parametrize("config", MAR_CONFIGS, ids=["plain", "cfg"])
def test_mar_groups_use_local_evaluations(mar, config):
    labels = torch.tensor([0, 1, 2, 3])
    out = sample_mar_recap(mar, labels, config, torch.Generator().manual_seed(0), group_size=3)
    assert out.values.shape == (4, 16, 3) and torch.isfinite(out.values).all()
    assert (out.values.abs().sum(-1) > 0).all()
    assert out.extras["full_evaluations"] == -(-config.iterations // 3) and out.extras["local_evaluations"] >= 1
    assert all(block.attention.kv_cache is None for block in mar.encoder)


def test_mar_recap_refuses_the_mae_split():
    spec = TokenSpec("continuous", "grid", grid=(2, 2), channels=2)
    model = MARGenerator(MARConfig(token_spec=spec.to_dict(), dim=16, num_heads=2, decoder_depth=1)).eval()
    with pytest.raises(ValueError, match="decoder_depth=0"):
        sample_mar_recap(model, torch.tensor([0]), MARSamplerConfig(iterations=2, steps=2))
