"""Next-X sampling: one entity per step with Euler / Euler-Maruyama flow integration; the KV-cached
transformer-denoiser sampler equals an uncached block-causal recompute at every flow step."""

import pytest
import torch

from artok.generators import NextXConfig, NextXGenerator
from artok.sampling import NextXSamplerConfig
from artok.tokens import TokenSpec
from artok.zoo import sample

pytestmark = pytest.mark.usefixtures("one_thread")

HEAD = {"denoiser": "head"}


@pytest.mark.parametrize("options", [{"unit": "token", **HEAD}, {"unit": "cell", "cell_size": 2, **HEAD},
                                     {"head": "diffusion", **HEAD}, {"unit": "token"}, {"unit": "cell", "cell_size": 2},
                                     {"unit": "image"}, {"unit": "scale"}],
                         ids=["head-token", "head-cell-padded", "head-diffusion", "token", "cell-padded", "image", "scale"])
@pytest.mark.parametrize("method", ["auto", "euler-maruyama"])
def test_returns_tokens_of_the_spec(zoo_generator, options, method):
    generator = zoo_generator("next-x", **options)
    if method == "euler-maruyama" and generator.config.head == "diffusion":
        pytest.skip("a diffusion head samples with ddpm")
    config = NextXSamplerConfig(steps=4, method=method, cfg_scale=2.0)
    tokens = sample(generator, torch.tensor([0, 1, 2]), config, torch.Generator().manual_seed(0))
    assert tokens.spec == generator.spec and tokens.values.shape == (3, 9, 2)
    assert torch.isfinite(tokens.values).all()


@pytest.mark.parametrize("denoiser", ["head", "transformer"])
def test_deterministic_in_seed(zoo_generator, denoiser):
    generator = zoo_generator("next-x", denoiser=denoiser)
    config = NextXSamplerConfig(steps=3, method="euler-maruyama")
    a = sample(generator, torch.tensor([0, 1]), config, torch.Generator().manual_seed(1)).values
    b = sample(generator, torch.tensor([0, 1]), config, torch.Generator().manual_seed(1)).values
    c = sample(generator, torch.tensor([0, 1]), config, torch.Generator().manual_seed(2)).values
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_transformer_denoiser_rejects_ddpm(zoo_generator):
    with pytest.raises(ValueError, match="euler"):
        sample(zoo_generator("next-x", denoiser="transformer"), torch.tensor([0]), NextXSamplerConfig(steps=2, method="ddpm"))


class Recorder:
    """Wraps ``generator.velocity`` and records every cached call (``input_pos`` given)."""

    def __init__(self, generator):
        self.calls, self.velocity = [], generator.velocity
        generator.velocity = self

    def __call__(self, x_t, t, labels, input_pos=None, **kwargs):
        out = self.velocity(x_t, t, labels, input_pos=input_pos, **kwargs)
        if input_pos is not None:
            self.calls.append((x_t.clone(), t.clone(), labels.clone(), input_pos.clone(), out.clone()))
        return out


GRID = TokenSpec("continuous", "grid", grid=(5, 5), channels=3)


@pytest.mark.parametrize("options", [{"unit": "cell", "cell_size": 2}, {"unit": "token"}, {"unit": "scale"}],
                         ids=["cell-padded", "token", "scale"])
@pytest.mark.parametrize("method", ["euler", "euler-maruyama"])
def test_cached_velocity_equals_uncached_recompute(options, method):
    """At every flow step of every entity n, the cached velocity equals a full block-causal forward
    (no cache) over ``[clean entities < n (t = 1), noisy entity n (t)]``."""
    torch.manual_seed(0)
    generator = NextXGenerator(NextXConfig(token_spec=GRID.to_dict(), num_classes=3, dim=32, depth=2, num_heads=2,
                                           token_scale=1.5, **{"denoiser": "transformer", **options})).eval()
    with torch.no_grad():  # adaLN-Zero gates and the output layer start at zero: make every path non-trivial
        for parameter in generator.parameters():
            if not parameter.any():
                parameter.normal_(std=0.2)
    recorder = Recorder(generator)
    steps, labels = 3, torch.tensor([0, 2])
    config = NextXSamplerConfig(steps=steps, method=method, cfg_scale=2.0, cfg_schedule="linear")
    tokens = sample(generator, labels, config, torch.Generator().manual_seed(0))
    del generator.velocity  # the recorder; back to the method
    num_entities = generator.num_units
    assert len(recorder.calls) == num_entities * (steps + 1) - 1  # flow steps + a clean pass but for the last
    clean = []  # the clean inputs of the entities' final cached passes, as the sampler produced them
    for n in range(num_entities):
        start, end = generator.entity_span(n)
        calls = recorder.calls[n * (steps + 1) : (n + 1) * (steps + 1)]
        flow_calls = calls[:steps]
        if n + 1 < num_entities:
            x_clean, t_clean, _, positions, _ = calls[steps]
            assert torch.equal(positions, torch.arange(start, end)) and (t_clean == 1).all()
            clean.append(x_clean)
        for i, (x_t, t, rows, positions, cached) in enumerate(flow_calls):
            assert torch.equal(positions, torch.arange(start, end)) and torch.allclose(t, torch.full_like(t, i / steps))
            assert rows.tolist() == [0, 2, 3, 3]  # [labels; null] for guidance
            prefix = torch.cat([*clean[:n], x_t], dim=1)
            times = torch.cat([torch.ones(4, start), t], dim=1)
            with torch.no_grad():
                full = generator.velocity(prefix, times, rows)
                torch.testing.assert_close(cached, full[:, start:end], atol=1e-5, rtol=1e-4)
                if n > 0 and i == 0:  # the check is sensitive: a context that is not clean changes it
                    wrong = generator.velocity(prefix, torch.cat([torch.full((4, start), 0.5), t], dim=1), rows)
                    assert (wrong[:, start:end] - cached).abs().max() > 1e-3
    # the returned tokens are the clean entities (the last scale / all units)
    if options["unit"] != "scale":
        sequence = torch.cat([*clean, recorder.calls[-1][0]], dim=1)[:2]  # last entity: its last flow input
        values = generator.to_sequence(tokens.values * generator.config.token_scale)
        torch.testing.assert_close(values[:, : sequence.shape[1] - generator.unit_size], sequence[:, : -generator.unit_size])


def test_transformer_denoiser_recovers_a_gaussian_mixture():
    """A 1D two-Gaussian mixture (one token, one class): the flow-matching transformer's Euler
    samples have the mixture's mean, variance and component weights."""
    torch.manual_seed(0)
    spec = TokenSpec("continuous", "sequence", length=1, channels=1)
    generator = NextXGenerator(NextXConfig(token_spec=spec.to_dict(), num_classes=1, dim=32, depth=1, num_heads=2,
                                           unit="image", class_dropout=0.0))

    def mixture(count):
        first = torch.rand(count) < 0.3
        return torch.where(first, -1.5 + 0.3 * torch.randn(count), 1.0 + 0.5 * torch.randn(count))[:, None, None]

    from artok.tokens import Tokens

    optimizer = torch.optim.AdamW(generator.parameters(), lr=5e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 300, eta_min=2.5e-4)
    for _ in range(300):
        loss = generator.loss(Tokens(spec, values=mixture(512)), torch.zeros(512, dtype=torch.long))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    generator.eval()
    mean = 0.3 * -1.5 + 0.7 * 1.0
    variance = 0.3 * (0.09 + 2.25) + 0.7 * (0.25 + 1.0) - mean**2
    for method in ("euler", "euler-maruyama"):
        samples = sample(generator, torch.zeros(3000, dtype=torch.long), NextXSamplerConfig(steps=20, method=method),
                         torch.Generator().manual_seed(0)).values.flatten()
        assert abs(samples.mean().item() - mean) < 0.12, method
        assert abs(samples.var().item() - variance) / variance < 0.15, method
        assert abs((samples < -0.25).float().mean().item() - 0.3) < 0.07, method


def test_compiled_velocity_matches_eager(zoo_generator):
    """``compile=True`` on CPU (inductor, no graphs): the transformer denoiser's velocity call is the
    compiled region; the samples match the eager loop up to kernel rounding. Bad values are refused."""
    from artok.generators.next_x.sample import sample_next_x

    generator = zoo_generator("next-x", denoiser="transformer", unit="cell")
    config = NextXSamplerConfig(steps=3, cfg_scale=2.0)
    labels = torch.tensor([0, 3])
    eager = sample_next_x(generator, labels, config, torch.Generator().manual_seed(0)).values
    compiled = sample_next_x(generator, labels, config, torch.Generator().manual_seed(0), compile=True).values
    assert torch.allclose(compiled, eager, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="compile must be"):
        sample_next_x(generator, labels, config, compile="yes")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_velocity_matches_eager(zoo_generator):
    from artok.generators.next_x.sample import sample_next_x

    generator = zoo_generator("next-x", denoiser="transformer", unit="cell").cuda()
    config = NextXSamplerConfig(steps=3, cfg_scale=2.0)
    labels = torch.arange(4, device="cuda")
    eager = sample_next_x(generator, labels, config, torch.Generator("cuda").manual_seed(0), compile=False).values
    graphs = sample_next_x(generator, labels, config, torch.Generator("cuda").manual_seed(0)).values
    again = sample_next_x(generator, labels, config, torch.Generator("cuda").manual_seed(0)).values
    assert torch.allclose(graphs, eager, atol=1e-3, rtol=1e-3) and torch.equal(graphs, again)
