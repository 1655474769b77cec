"""Any-subset AR + ASSD: the draft pass gives the model's own any-subset conditionals, the plain
loop's cache matches its recompute, and ASSD samples the model's exact joint law on an enumerable toy
(2 x 2 grid, 3 ids: 81 grids; chi-square p > 1e-3 and TV < 0.02 with 20,000 samples, while a wrong
law, the product of the draft marginals, is rejected), with its mean tokens per forward."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch
from scipy import stats

from artok.generators.any_order import AnyOrderConfig, AnyOrderGenerator
from artok.generators.any_order.sample import sample_any_order, sample_any_order_recompute
from artok.generators.any_order.speculative import guided, sample_assd
from artok.sampling.configs import SamplerConfig
from artok.tokens import TokenSpec

VOCAB, LENGTH, SAMPLES, TV_TOLERANCE = 3, 4, 20000, 0.02
ORDER = torch.tensor([2, 0, 3, 1])


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _toy(seed: int = 0, scale: float = 0.4, grid=(2, 2), vocab=VOCAB) -> AnyOrderGenerator:
    """Weights scaled up from the init so the conditionals are far from uniform."""
    torch.manual_seed(seed)
    spec = TokenSpec("discrete", "grid", grid=grid, vocab_size=vocab)
    generator = AnyOrderGenerator(AnyOrderConfig(token_spec=spec.to_dict(), num_classes=2, dim=16, depth=2,
                                                 num_heads=2)).eval()
    with torch.no_grad():
        for parameter in generator.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, scale)
    return generator


def _grids() -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(VOCAB), repeat=LENGTH)))


def _index(ids: torch.Tensor) -> torch.Tensor:
    return (ids * VOCAB ** torch.arange(LENGTH - 1, -1, -1)).sum(-1)


@torch.no_grad()
def _law(generator, label: int, config: SamplerConfig, marginals: bool = False) -> torch.Tensor:
    """p(grid) for all 81 grids visited in ORDER: the product of the sampler's conditionals (or,
    with ``marginals``, of the draft's marginals given the class only: a wrong law)."""
    grids = _grids()
    rows = torch.full((len(grids),), label)
    orders = ORDER.expand(len(grids), LENGTH)
    double = (lambda t: torch.cat([t, t])) if config.uses_cfg else (lambda t: t)
    labels = torch.cat([rows, torch.full_like(rows, generator.null_class)]) if config.uses_cfg else rows
    if marginals:
        logits = generator.subset_conditionals(double(grids), labels, double(orders), torch.zeros(len(labels),
                                               dtype=torch.long), LENGTH)
    else:
        logits = generator.ordered_logits(double(grids), labels, double(orders))
    probs = guided(logits, config).double()
    law = probs.gather(-1, grids[:, ORDER][..., None]).squeeze(-1).prod(-1)
    return law / law.sum()  # fp32 conditionals: renormalise the rounding away


def _fit(samples: torch.Tensor, law: torch.Tensor) -> tuple[float, float]:
    """(chi-square p-value with cells expected < 5 times pooled, total variation)."""
    counts = torch.bincount(_index(samples), minlength=len(law)).double()
    expected = law * counts.sum()
    small = expected < 5
    observed = torch.cat([counts[~small], counts[small].sum()[None]])
    expected = torch.cat([expected[~small], expected[small].sum()[None]])
    keep = expected > 0
    pvalue = 0.0 if (observed[~keep] > 0).any() else float(stats.chisquare(observed[keep].numpy(), expected[keep].numpy()).pvalue)
    return pvalue, 0.5 * float((counts / counts.sum() - law).abs().sum())


def test_the_draft_pass_gives_the_models_any_subset_conditionals():
    generator = _toy(grid=(3, 3), vocab=8)
    ids, labels = torch.randint(0, 8, (2, 9)), torch.tensor([0, 1])
    orders = torch.stack([torch.randperm(9, generator=torch.Generator().manual_seed(s)) for s in range(2)])
    known = torch.tensor([3, 5])
    drafts = generator.subset_conditionals(ids, labels, orders, known, 3)
    for row in range(2):
        for i in range(3):  # the order that visits the i-th next cell right after the known ones
            reordered = orders[row].clone()
            n = int(known[row])
            reordered[[n, n + i]] = orders[row, [n + i, n]]
            expected = generator.ordered_logits(ids[row : row + 1], labels[row : row + 1], reordered[None])[0, n]
            torch.testing.assert_close(drafts[row, i], expected, rtol=1e-4, atol=1e-5)


def test_plain_loop_cache_equals_recompute_in_any_order():
    generator = _toy(grid=(3, 3), vocab=8)
    labels = torch.tensor([0, 1, 1])
    for config in (SamplerConfig(cfg_scale=2.0), SamplerConfig(temperature=0.8, top_k=3)):
        cached = sample_any_order(generator, labels, config, torch.Generator().manual_seed(2))
        uncached = sample_any_order_recompute(generator, labels, config, torch.Generator().manual_seed(2))
        assert torch.equal(cached.ids, uncached.ids)


@pytest.mark.parametrize("config", [SamplerConfig(), SamplerConfig(cfg_scale=2.0, temperature=0.9, top_k=2)],
                         ids=["plain", "guided-topk"])
def test_assd_samples_the_exact_joint_law(config):
    generator = _toy()
    labels = torch.ones(SAMPLES, dtype=torch.long)
    out = sample_assd(generator, labels, config, torch.Generator().manual_seed(0), draft_length=3,
                      orders=ORDER.expand(SAMPLES, LENGTH))
    law, wrong = _law(generator, 1, config), _law(generator, 1, config, marginals=True)
    distance = 0.5 * float((law - wrong).abs().sum())
    pvalue, tv = _fit(out.tokens.ids, law)
    assert pvalue > 1e-3 and tv < TV_TOLERANCE, (pvalue, tv)
    assert distance > 5 * TV_TOLERANCE  # the wrong law is far enough to be told apart ...
    assert _fit(out.tokens.ids, wrong)[1] > distance - TV_TOLERANCE  # ... and it is rejected
    assert (out.iterations <= LENGTH).all() and out.tokens_per_forward >= 0.5
    print(f"ASSD {config}: tokens per forward {out.tokens_per_forward:.3f}, TV {tv:.4f}, p {pvalue:.3f}")


def test_the_plain_loop_samples_the_same_law():
    generator, config = _toy(), SamplerConfig()
    labels = torch.ones(SAMPLES, dtype=torch.long)
    tokens = sample_any_order(generator, labels, config, torch.Generator().manual_seed(1),
                              orders=ORDER.expand(SAMPLES, LENGTH))
    pvalue, tv = _fit(tokens.ids, _law(generator, 1, config))
    assert pvalue > 1e-3 and tv < TV_TOLERANCE


@pytest.mark.parametrize("draft_length", [1, 3, 5, 12])
def test_cached_assd_equals_the_recomputing_reference(draft_length):
    """The per-row KV cache (rows advance by different amounts) gives the same tokens, iteration
    counts and forward passes as recomputing the visited prefix in every pass."""
    generator = _toy(seed=3, scale=0.15, grid=(3, 3), vocab=8)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    for config in (SamplerConfig(), SamplerConfig(cfg_scale=2.0, temperature=0.9), SamplerConfig(top_k=3)):
        outs = [sample_assd(generator, labels, config, torch.Generator().manual_seed(4), draft_length=draft_length,
                            use_cache=use_cache) for use_cache in (True, False)]
        assert torch.equal(outs[0].tokens.ids, outs[1].tokens.ids), config
        assert torch.equal(outs[0].iterations, outs[1].iterations) and outs[0].forwards == outs[1].forwards
        if draft_length == 12:  # past the sequence: capped at L (a hostile 10**9 allocates nothing more)
            huge = sample_assd(generator, labels, config, torch.Generator().manual_seed(4), draft_length=10**9)
            assert torch.equal(huge.tokens.ids, outs[0].tokens.ids)
        if draft_length in (3, 5):  # with k = 1 every row keeps 2 per pass; with k = 12 one pass ends it
            assert len(set(outs[0].iterations.tolist())) > 1  # rows did advance unevenly


def test_assd_refuses_bad_options():
    generator, labels = _toy(), torch.tensor([0])
    with pytest.raises(ValueError, match="draft_length"):
        sample_assd(generator, labels, SamplerConfig(), draft_length=0)
    with pytest.raises(ValueError, match="constant guidance"):
        sample_assd(generator, labels, replace(SamplerConfig(cfg_scale=2.0), cfg_schedule="linear"))



def test_bench_times_the_any_order_loop_not_the_raster_one(tmp_path):
    import json

    from artok.cli.main import main
    from artok.hub import save_pretrained

    save_pretrained(_toy(grid=(3, 3), vocab=8), tmp_path / "gen")
    assert main(["bench", "--checkpoint", str(tmp_path / "gen"), "--batch-sizes", "2", "--out",
                 str(tmp_path / "bench.json"), "--no-progress"]) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["model"]["kind"] == "any-order" and result["rows"][0]["images_per_s"] > 0
