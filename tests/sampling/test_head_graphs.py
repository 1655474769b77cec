"""`HeadSampler`: the head's step loop as one unit (one CUDA graph per padded row count on CUDA).

On CPU it must draw exactly what `sample_head` draws; the static-buffer loop the graph captures
(padding, the [cond; uncond] layout, per-row guidance scales) must equal the plain loop on the real
rows. The capture itself needs CUDA (last test, skipped without it)."""

import pytest
import torch

from artok.generators.mar.sample import sample_mar
from artok.heads import DiffusionHead, FlowHead
from artok.sampling import MARSamplerConfig
from artok.sampling.continuous import sample_head
from artok.sampling.head_graphs import HeadSampler, _CapturedLoop

pytestmark = pytest.mark.usefixtures("one_thread")

HEADS = {
    "ddpm": lambda: DiffusionHead(3, 8, width=16, depth=2),
    "ddpm-v": lambda: DiffusionHead(3, 8, width=16, depth=2, prediction="v"),
    "euler": lambda: FlowHead(3, 8, width=16, depth=2),
    "euler-maruyama": lambda: FlowHead(3, 8, width=16, depth=2),
}


def _randomised(head):
    torch.manual_seed(0)
    for parameter in head.parameters():  # adaLN-zero init would make every output 0
        parameter.data.normal_(0, 0.3)
    return head.eval()


@pytest.mark.parametrize("name", list(HEADS))
@pytest.mark.parametrize("guided", [False, True])
def test_same_draws_as_sample_head(name, guided):
    head = _randomised(HEADS[name]())
    method = "euler-maruyama" if name == "euler-maruyama" else "auto"
    z = torch.randn(10 if guided else 5, 8, generator=torch.Generator().manual_seed(1))
    options = dict(steps=6, method=method, temperature=0.9, guided=guided, final_noise=0.05)
    scale = torch.linspace(1.0, 3.0, 5) if guided else 1.0
    expected = sample_head(head, z, cfg_scale=scale, rng=torch.Generator().manual_seed(2), **options)
    sampler = HeadSampler(head, cuda_graphs=False, **options)
    assert torch.equal(sampler(z, scale, torch.Generator().manual_seed(2)), expected)


@pytest.mark.parametrize("name", ["ddpm", "euler-maruyama"])
@pytest.mark.parametrize("guided", [False, True])
def test_static_padded_loop_equals_the_plain_loop(name, guided):
    """What the graph replays: rows copied into padded static buffers ([cond; uncond] halves padded
    separately, stale data in the padding) give the real rows' tokens unchanged."""
    head = _randomised(HEADS[name]())
    method = "euler-maruyama" if name == "euler-maruyama" else "auto"
    sampler = HeadSampler(head, steps=5, method=method, guided=guided, cuda_graphs=False, row_bucket=8)
    loop = _CapturedLoop(sampler, 8, 8, torch.float32, pool=None, capture=False)
    g = torch.Generator().manual_seed(3)
    loop.z.normal_(generator=g)  # stale rows in the padding must not leak into real ones
    loop.noise.normal_(generator=g)
    for rows in (3, 8, 5):
        z = torch.randn((2 if guided else 1) * rows, 8, generator=g)
        noise = sampler.draw_noise(rows, g)
        scale = torch.rand(rows, generator=g) * 3 + 1
        expected = sampler._loop(z, noise, scale)
        assert torch.allclose(loop(z, noise, scale, rows), expected, atol=1e-6)
        assert torch.allclose(loop(z, noise, 2.5, rows), sampler._loop(z, noise, 2.5), atol=1e-6)


def test_rejects_bad_options():
    head = HEADS["ddpm"]()
    with pytest.raises(ValueError, match="cuda_graphs"):
        HeadSampler(head, steps=4, cuda_graphs="yes")
    with pytest.raises(ValueError, match="row_bucket"):
        HeadSampler(head, steps=4, row_bucket=0)
    with pytest.raises(ValueError, match="ddpm"):
        HeadSampler(head, steps=4, method="euler")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("guided", [False, True])
def test_cuda_graph_replay_equals_eager(guided):
    head = _randomised(DiffusionHead(16, 32, width=64, depth=3)).cuda()
    sampler = HeadSampler(head, steps=20, guided=guided, row_bucket=16)
    eager = HeadSampler(head, steps=20, guided=guided, cuda_graphs=False)
    assert sampler.cuda_graphs and not eager.cuda_graphs
    g = torch.Generator("cuda").manual_seed(0)
    for rows in (16, 5, 11, 16):  # two buckets, each replayed with different inputs
        z = torch.randn((2 if guided else 1) * rows, 32, device="cuda", generator=g)
        noise = sampler.draw_noise(rows, g)
        scale = torch.rand(rows, device="cuda", generator=g) + 1
        got, want = sampler._replay(z, noise, scale), eager._loop(z, noise, scale)
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    assert sorted(sampler._graphs) == [16]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_mar_with_graphs_matches_moments(zoo_generator):
    """Same law with and without graphs (different noise streams): per-coordinate means agree."""
    generator = zoo_generator("mar").cuda()
    config = MARSamplerConfig(iterations=4, steps=10, cfg_scale=2.0)
    labels = torch.arange(3, device="cuda").repeat(200)
    a = sample_mar(generator, labels, config, torch.Generator("cuda").manual_seed(0)).values
    b = sample_mar(generator, labels, config, torch.Generator("cuda").manual_seed(1), cuda_graphs=False).values
    se = (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt()
    assert ((a.mean(0) - b.mean(0)).abs() / se).max() < 6


def test_for_config_reuses_samplers_until_the_weights_change():
    head = HEADS["ddpm"]()
    config = MARSamplerConfig(steps=4, cfg_scale=2.0)
    first = HeadSampler.for_config(head, config, guided=True)
    assert HeadSampler.for_config(head, config, guided=True) is first
    assert HeadSampler.for_config(head, config, guided=False) is not first
    head.to(torch.float64)  # new storage: a captured graph would read the old one
    again = HeadSampler.for_config(head, config, guided=True)
    assert again is not first and again is HeadSampler.for_config(head, config, guided=True)


def test_cached_samplers_do_not_keep_heads_alive():
    import gc
    import weakref

    head = HEADS["ddpm"]()
    HeadSampler.for_config(head, MARSamplerConfig(steps=4), guided=False)
    alive = weakref.ref(head)
    del head
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize("name", ["ddpm", "euler"])
def test_final_mean_with_shared_noise(name):
    """`HeadSampler.final_mean` is `continuous.final_mean` on pre-drawn noise (what continuous
    speculative decoding shares between heads); Euler reads only the first of the slices given."""
    from artok.sampling.continuous import final_mean, noise_count

    head = _randomised(HEADS[name]())
    g = torch.Generator().manual_seed(4)
    z, noise = torch.randn(8, 8, generator=g), torch.randn(noise_count(5), 4, 3, generator=g)
    scale = torch.tensor([1.0, 2.0, 3.0, 1.5])
    sampler = HeadSampler(head, steps=5, guided=True, cuda_graphs=False)
    expected = final_mean(head, z, steps=5, guided=True, cfg_scale=scale, noise=noise)
    assert torch.equal(sampler.final_mean(z, noise, scale), expected)
