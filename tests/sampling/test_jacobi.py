"""Speculative Jacobi decoding reproduces the target's law of whole sequences (enumerated on a tiny
model), not its uniform initial drafts."""

import pytest
import torch
from exact_law import (
    VOCAB,
    all_sequences,
    chi_square_pvalue,
    enumerable_generator,
    exact_law,
    one_thread,  # noqa: F401  (autouse fixture)
    total_variation,
)

from artok.generators.raster.jacobi import jacobi_sample
from artok.sampling.configs import SamplerConfig

# Same tolerances as test_speculative.py (12,000 sequences over 81 cells).
NUM_SAMPLES = 12_000
TV_TOLERANCE = 0.06


@pytest.mark.parametrize(
    "config, window",
    [(SamplerConfig(), 2), (SamplerConfig(cfg_scale=2.0, top_k=2, temperature=1.2), 3)],
    ids=["plain-w2", "cfg-topk-w3"],
)
def test_jacobi_matches_target_law(config, window):
    target = enumerable_generator(0, scale=0.2)
    law = exact_law(target, 1, config)
    uniform = torch.full_like(law, 1.0 / len(law))
    labels = torch.ones(NUM_SAMPLES, dtype=torch.long)
    result = jacobi_sample(target, labels, config, torch.Generator().manual_seed(0), window=window)
    samples = result.tokens.ids
    assert samples.shape == (NUM_SAMPLES, all_sequences().shape[1]) and int(samples.max()) < VOCAB
    assert total_variation(samples, law) < TV_TOLERANCE
    assert chi_square_pvalue(samples, law) > 1e-3
    assert total_variation(samples, uniform) > 0.3  # far from the drafts' initial law
    assert result.stats.mean_accepted > 1.0 and result.stats.draft_forwards == 0


def test_jacobi_on_grid_generator(tiny_generator):
    out = jacobi_sample(tiny_generator, torch.tensor([0, 1, 2, 3]), SamplerConfig(cfg_scale=3.0, top_p=0.9),
                        torch.Generator().manual_seed(0), window=4)
    assert out.tokens.ids.shape == (4, 9) and out.tokens.spec == tiny_generator.spec
    assert 1 <= out.stats.target_forwards <= 9
    with pytest.raises(ValueError, match="window"):
        jacobi_sample(tiny_generator, torch.tensor([0]), SamplerConfig(), window=0)


def test_compiled_rounds_match_eager(tiny_generator):
    """With a compiled engine (CPU inductor) the forward and the per-round update are compiled; the
    randomness is drawn outside both, so the tokens match the eager run up to kernel rounding."""
    from artok.generators.raster.engine import SamplingEngine

    config = SamplerConfig(cfg_scale=2.0, temperature=0.9)
    labels = torch.tensor([0, 1, 2])
    eager = jacobi_sample(tiny_generator, labels, config, torch.Generator().manual_seed(0), window=4).tokens.ids
    engine = SamplingEngine(tiny_generator, 3, extra_positions=5, compile=True)
    compiled = jacobi_sample(tiny_generator, labels, config, torch.Generator().manual_seed(0), window=4, engine=engine)
    assert (compiled.tokens.ids == eager).float().mean() > 0.9
