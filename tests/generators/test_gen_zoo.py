"""Every generator kind: built from its natural tokenizer, saved and reloaded (same weights, same
samples), and rejecting tokenizers it cannot model with an IncompatibleTokensError."""

import pytest
import torch
from artok_test_helpers import NATURAL, options_for
from artok_test_helpers import fast_sampler as _fast_sampler

from artok.generators import IncompatibleTokensError
from artok.hub import from_pretrained, load_config, save_pretrained
from artok.sampling import sampler_config_to_dict
from artok.zoo import (
    GENERATOR_KINDS,
    build_generator,
    default_sampler_config,
    generator_kind,
    get_kind,
    sample,
)


def fast_sampler(generator):
    return _fast_sampler(generator, cfg_scale=2.0)


@pytest.mark.parametrize("kind", GENERATOR_KINDS)
def test_save_load_round_trip(kind, make_tokenizer, tmp_path):
    tokenizer = make_tokenizer(NATURAL[kind])
    generator = build_generator(kind, tokenizer, num_classes=3, **options_for(kind)).eval()
    assert generator_kind(generator) == kind
    sampler = fast_sampler(generator)
    save_pretrained(generator, tmp_path / kind, extra={"sampling": sampler_config_to_dict(sampler)})
    assert load_config(tmp_path / kind)["extra"]["sampling"]["kind"] in ("raster", kind, get_kind(kind).sampler)
    loaded = from_pretrained(tmp_path / kind)
    assert type(loaded) is type(generator) and loaded.config == generator.config
    for key, value in generator.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    # the stored sampling defaults come back as the default config
    assert default_sampler_config(loaded) == sampler
    labels = torch.tensor([0, 2])
    a = sample(generator, labels, sampler, torch.Generator().manual_seed(3))
    b = sample(loaded, labels, None, torch.Generator().manual_seed(3))
    assert a.spec == tokenizer.spec
    assert torch.equal(a.data, b.data)
    assert tokenizer.decode(b).shape == (2, 1, 8, 8)


INCOMPATIBLE = [
    ("raster", "kl"), ("raster", "msvq"), ("raster", "ptq"), ("maskgit", "kl"), ("maskgit", "msvq"),
    ("bitwise", "kl"), ("bitwise", "ptq"), ("dimwise", "vq"), ("dimwise", "kl"), ("next-scale", "vq"), ("next-scale", "kl"),
    ("mar", "vq"), ("mar", "msvq"), ("next-x", "lfq"), ("next-x", "ptq"),
]


@pytest.mark.parametrize("kind,tokenizer_name", INCOMPATIBLE)
def test_incompatible_pairings_raise(kind, tokenizer_name, make_tokenizer):
    with pytest.raises(IncompatibleTokensError) as error:
        build_generator(kind, make_tokenizer(tokenizer_name), num_classes=3, **options_for(kind))
    message = str(error.value)
    # the message names something that would fit
    assert any(word in message for word in ("use", "Use")), message


def test_unknown_kind_and_option(make_tokenizer):
    with pytest.raises(ValueError, match="unknown generator kind"):
        build_generator("diffusion", make_tokenizer("vq"), num_classes=3)
    with pytest.raises(ValueError, match="no option"):
        build_generator("maskgit", make_tokenizer("vq"), num_classes=3, unit="cell")


@pytest.mark.parametrize("kind", GENERATOR_KINDS)
def test_samples_with_bf16_weights(kind, make_tokenizer):
    """Every kind samples with bf16 weights (what `artok bench` and the CUDA defaults run): the
    samplers keep their state in fp32 and each network casts its inputs to its own dtype. The
    samples stay close to the fp32 ones (same seed; bf16 rounding may flip a few draws)."""
    generator = build_generator(kind, make_tokenizer(NATURAL[kind]), num_classes=3, **options_for(kind)).eval()
    sampler = fast_sampler(generator)
    labels = torch.tensor([0, 2])
    reference = sample(generator, labels, sampler, torch.Generator().manual_seed(3))
    for parameter in generator.parameters():
        parameter.data = parameter.data.to(torch.bfloat16)
    tokens = sample(generator, labels, sampler, torch.Generator().manual_seed(3))
    assert tokens.spec == reference.spec and tokens.data.shape == reference.data.shape
    if tokens.spec.kind == "continuous":
        assert tokens.data.dtype == torch.float32 and torch.isfinite(tokens.data).all()
        assert (tokens.data - reference.data).abs().mean() < 0.1 * reference.data.abs().mean() + 0.05
