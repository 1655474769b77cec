"""VAR-style next-scale generator: block-causal mask, msvq tokenizer spec, training, teacher forcing."""

import pytest
import torch

from artok.generators import (
    IncompatibleTokensError,
    NextScaleConfig,
    NextScaleGenerator,
    block_causal_mask,
)
from artok.sampling import NextScaleSamplerConfig
from artok.tokens import TokenSpec
from artok.zoo import sample


def brute_force_mask(scales):
    positions = [(k, i) for k, (h, w) in enumerate(scales) for i in range(h * w)]
    mask = torch.zeros(len(positions), len(positions), dtype=torch.bool)
    for a, (scale_a, _) in enumerate(positions):
        for b, (scale_b, _) in enumerate(positions):
            mask[a, b] = scale_b <= scale_a
    return mask


@pytest.mark.parametrize("scales", [[(1, 1)], [(1, 1), (2, 2), (3, 3)], [(1, 2), (2, 3), (4, 4), (5, 7)]])
def test_block_causal_mask_matches_brute_force(scales):
    assert torch.equal(block_causal_mask([h * w for h, w in scales]), brute_force_mask(scales))


def test_msvq_tokenizer_emits_scales(make_tokenizer):
    tokenizer = make_tokenizer("msvq")
    assert tokenizer.spec == TokenSpec("discrete", "scales", scales=((1, 1), (2, 2), (4, 4)), vocab_size=16, channels=8)
    images = torch.rand(3, 1, 8, 8) * 2 - 1
    tokens = tokenizer.encode(images)
    assert tokens.ids.shape == (3, 21)
    with torch.no_grad():
        direct = tokenizer(images).reconstruction.clamp(-1, 1)
    torch.testing.assert_close(tokenizer.decode(tokens), direct, atol=1e-5, rtol=1e-5)


def make_generator(tokenizer, **options):
    defaults = dict(num_classes=3, dim=32, depth=2, num_heads=2)
    return NextScaleGenerator.from_tokenizer(tokenizer, **{**defaults, **options})


def test_trains(make_tokenizer, learnable_tokens, fit):
    tokenizer = make_tokenizer("msvq")
    generator = make_generator(tokenizer)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    losses = fit(generator, learnable_tokens(tokenizer.spec, labels), labels, steps=30)
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])
    assert not any(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.scale_quantizer.parameters())


def test_teacher_forcing_equals_scale_by_scale_cached_pass(make_tokenizer):
    """The training pass and the per-scale cached pass see the same inputs and give the same states."""
    tokenizer = make_tokenizer("msvq")
    generator = make_generator(tokenizer).eval()
    ids = torch.randint(0, 16, (2, 21))
    labels = torch.tensor([1, 2])
    with torch.no_grad():
        full = generator.hidden_states(ids, labels)
        generator.setup_cache(2)
        cond, steps, scale_input = generator.condition(labels), [], None
        f_hat = torch.zeros(2, 8, 4, 4)
        for k, part in enumerate(generator.scale_quantizer.split_ids(ids)):
            start, end = generator.scale_span(k)
            x = generator.embed_scale(labels, k, scale_input)
            steps.append(generator.transformer(x, cond, torch.arange(start, end)))
            features = generator.scale_quantizer.add_scale(f_hat, k, part)
            f_hat = features.f_hat
            if features.next_input is not None:
                scale_input = features.next_input.flatten(2).transpose(1, 2)
        generator.clear_cache()
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_bitwise_head_on_power_of_two_codebook(make_tokenizer, learnable_tokens, fit):
    tokenizer = make_tokenizer("msvq")
    generator = make_generator(tokenizer, head="bitwise")
    labels = torch.tensor([0, 1, 2, 0])
    losses = fit(generator, learnable_tokens(tokenizer.spec, labels), labels, steps=20)
    assert losses[-1] < losses[0]
    tokens = sample(generator, labels, NextScaleSamplerConfig(cfg_scale=2.0), torch.Generator().manual_seed(0))
    assert tokens.spec == tokenizer.spec and tokens.ids.shape == (4, 21)


def test_incompatible_pairings(make_tokenizer):
    with pytest.raises(IncompatibleTokensError, match="msvq"):
        NextScaleGenerator.from_tokenizer(make_tokenizer("vq"), num_classes=3)
    grid = TokenSpec("discrete", "grid", grid=(4, 4), vocab_size=16)
    with pytest.raises(IncompatibleTokensError, match="layout 'scales'"):
        NextScaleGenerator.check_spec(grid)
    tokenizer = make_tokenizer("msvq")
    config = tokenizer.quantizer.config
    with pytest.raises(ValueError, match="does not emit these tokens"):
        NextScaleConfig(token_spec=TokenSpec("discrete", "scales", scales=((1, 1), (4, 4)), vocab_size=16).to_dict(),
                        quantizer=vars(config))
