"""D-AR's sequential diffusion tokenizer: shapes and spec, the causal query encoder, the flow network
ignoring every token group after the current interval (exactly), previews from prefixes (differ
from all tokens, deterministic for a seed, equal to decoding a prefix-only `Tokens`), the training
loss falling under the shared tokenizer objective, save/load, the command line."""

from __future__ import annotations

import json

import pytest
import torch
from artok_test_helpers import tiny_dar_tokenizer

from artok.cli.main import main
from artok.hub import from_pretrained, save_pretrained
from artok.tokenizers.dar import DARTokenizer, DARTokenizerConfig, encoder_mask
from artok.tokens import Tokens


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _images(batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _noised(tokenizer: DARTokenizer, seed: int = 1, scale: float = 0.1) -> DARTokenizer:
    """Seeded noise on every parameter, so that every layer (and every token) visibly matters."""
    stream = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, parameter in sorted(tokenizer.named_parameters()):
            parameter.add_(torch.randn(parameter.shape, generator=stream) * scale)
    return tokenizer.eval()


@pytest.fixture
def tokenizer() -> DARTokenizer:
    torch.manual_seed(0)
    return _noised(tiny_dar_tokenizer())


def test_shapes_and_spec(tokenizer):
    tokens = tokenizer.encode(_images())
    assert tokens.spec.layout == "sequence" and tokens.spec.length == 8 and tokens.spec.vocab_size == 16
    assert tokens.ids.shape == (3, 8) and tokenizer.config.group_size == 2
    assert tokenizer.decode(tokens).shape == (3, 1, 8, 8)
    assert tokenizer.prefix_lengths() == [2, 4, 6, 8]
    out = tokenizer.train()(_images())
    assert out.reconstruction.shape == (3, 1, 8, 8) and torch.isfinite(out.quantizer.loss)
    assert "flow_loss" in out.quantizer.metrics and out.quantizer.loss > out.quantizer.metrics["flow_loss"]


def test_encoder_queries_are_causal(tokenizer):
    mask = encoder_mask(2, 3)
    assert mask[:2].tolist() == [[True, True, False, False, False]] * 2  # patches see patches only
    assert mask[2:, 2:].tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # so the first latents do not depend on the later queries
    images = _images()
    before = tokenizer.encode_latents(images)
    with torch.no_grad():
        tokenizer.latent_queries[5:] += 1.0
    after = tokenizer.encode_latents(images)
    assert torch.equal(before[..., :5], after[..., :5]) and not torch.allclose(before[..., 5:], after[..., 5:])


def test_visible_tokens_follow_the_intervals(tokenizer):
    u = torch.tensor([0.0, 0.24, 0.25, 0.6, 0.99, 1.0])
    assert tokenizer.visible_tokens(u).tolist() == [2, 2, 4, 6, 8, 8]
    tokenizer.config.prefix_dropout = 1.0
    torch.manual_seed(0)
    counts = tokenizer.training_visible(torch.full((200,), 0.99))
    assert set(counts.tolist()) == {2, 4, 6, 8}  # every prefix of groups is trained
    tokenizer.config.prefix_dropout = 0.0
    assert tokenizer.training_visible(torch.full((5,), 0.99)).tolist() == [8] * 5


def test_flow_network_ignores_groups_after_the_interval(tokenizer):
    """Changing the tokens of groups 2..4 leaves the velocity in interval 1 and the first-interval
    Euler states unchanged, bit for bit; in later intervals it changes them."""
    latents = tokenizer.quantizer(tokenizer.encode_latents(_images())).quantized
    other = latents.clone()
    other[..., 2:] = torch.randn(other[..., 2:].shape, generator=torch.Generator().manual_seed(9))
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    for u, same in ((0.1, True), (0.24, True), (0.3, False), (0.9, False)):
        times = torch.full((3,), u)
        a, b = tokenizer.velocity(x, times, latents), tokenizer.velocity(x, times, other)
        assert torch.equal(a, b) == same, u
    steps = 8  # 2 Euler steps per interval
    _, states_a = tokenizer.decode_latents(latents, steps=steps, return_states=True)
    _, states_b = tokenizer.decode_latents(other, steps=steps, return_states=True)
    assert all(torch.equal(states_a[i], states_b[i]) for i in range(3))  # noise + the 2 first-interval steps
    assert not torch.allclose(states_a[3], states_b[3])


def test_previews_differ_and_are_deterministic_for_a_seed(tokenizer):
    tokens = tokenizer.encode(_images())
    full = tokenizer.decode(tokens)
    assert torch.equal(full, tokenizer.decode(tokens))  # default: seeded by config.decode_seed
    previews = {k: tokenizer.decode(tokens, num_tokens=k) for k in (2, 4, 6)}
    for k, image in previews.items():
        assert not torch.allclose(image, full), k
    seeded = [tokenizer.decode(tokens, num_tokens=4, generator=torch.Generator().manual_seed(s)) for s in (5, 5, 6)]
    assert torch.equal(seeded[0], seeded[1]) and not torch.allclose(seeded[0], seeded[2])
    # a Tokens holding only the prefix decodes as the prefix of the whole sequence
    prefix = Tokens(tokens.spec.__class__(**{**tokens.spec.to_dict(), "length": 4}), ids=tokens.ids[:, :4])
    assert torch.equal(tokenizer.decode(prefix), previews[4])
    # a preview is blind to the tokens after its prefix
    changed = Tokens(tokens.spec, ids=torch.cat([tokens.ids[:, :4], (tokens.ids[:, 4:] + 1) % 16], dim=1))
    assert torch.equal(tokenizer.decode(changed, num_tokens=4), previews[4])


def test_loss_falls_on_a_tiny_batch():
    from artok.training.tokenizer_trainer import tokenizer_loss

    torch.manual_seed(0)
    tokenizer = tiny_dar_tokenizer().train()
    images = _images(8)

    def measured() -> float:
        torch.manual_seed(123)  # the same times and noise before and after
        with torch.no_grad():
            return float(sum(tokenizer_loss(tokenizer, images)["loss"] for _ in range(4)))

    before = measured()
    optimizer = torch.optim.AdamW(tokenizer.parameters(), lr=3e-3)
    for _ in range(40):
        loss = tokenizer_loss(tokenizer, images)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert measured() < 0.7 * before


def test_gradients_reach_encoder_null_token_and_flow():
    torch.manual_seed(0)
    tokenizer = _noised(tiny_dar_tokenizer(prefix_dropout=1.0)).train()
    torch.manual_seed(1)
    out = tokenizer(_images())
    (out.quantizer.loss + out.reconstruction.square().mean()).backward()
    for name in ("patch_embedding.weight", "null_token", "flow.to_pixels.weight", "from_latent.weight"):
        grad = dict(tokenizer.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_save_load_via_hub(tokenizer, tmp_path):
    save_pretrained(tokenizer, tmp_path / "dar")
    loaded = from_pretrained(tmp_path / "dar")
    assert type(loaded) is DARTokenizer and loaded.config == tokenizer.config
    tokens = tokenizer.encode(_images())
    assert torch.equal(loaded.encode(_images()).ids, tokens.ids)
    assert torch.equal(loaded.decode(tokens, num_tokens=6), tokenizer.decode(tokens, num_tokens=6))


def test_config_and_input_errors(tokenizer):
    with pytest.raises(ValueError, match="not divisible by num_groups"):
        DARTokenizerConfig(num_latent_tokens=10, num_groups=4)
    with pytest.raises(ValueError, match="prefix_dropout"):
        DARTokenizerConfig(prefix_dropout=1.5)
    tokens = tokenizer.encode(_images())
    with pytest.raises(ValueError, match="num_tokens must be in"):
        tokenizer.decode(tokens, num_tokens=9)
    with pytest.raises(ValueError, match="steps must be positive"):
        tokenizer.decode(tokens, steps=0)
    with pytest.raises(ValueError, match="cannot be decoded"):
        tokenizer.decode(Tokens(tokens.spec.__class__("discrete", "grid", grid=(2, 4), vocab_size=16), ids=tokens.ids))


def test_command_line_trains_a_dar_tokenizer(tmp_path, capsys):
    out = tmp_path / "tok"
    code = main(["train-tokenizer", "--arch", "dar", "--dataset", "digits", "--steps", "2", "--batch-size", "8",
                 "--num-tokens", "8", "--dim", "32", "--quantizer-options", '{"codebook_size": 16}', "--out", str(out),
                 "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and "psnr" in json.loads(printed[printed.index("{"):])
    loaded = from_pretrained(out)
    assert type(loaded) is DARTokenizer and loaded.config.num_latent_tokens == 8 and loaded.spec.vocab_size == 16
