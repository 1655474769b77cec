"""Contract tests every quantizer in the zoo must pass (shapes, ids, gradients, autocast, registry)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from artok.quantizers import (
    QUANTIZERS,
    build_quantizer,
    quantizer_from_config,
    quantizer_kind,
)

DIM = 6
# name -> (registry kind, config kwargs); tiny configs for CPU.
CASES = {
    "vq": ("vq", dict(dim=DIM, codebook_size=16)),
    "vq_ema_kmeans_rotation": (
        "vq",
        dict(dim=DIM, codebook_size=16, ema_decay=0.9, kmeans_init=True, rotation_trick=True, dead_code_threshold=0.5),
    ),
    "vq_euclidean": ("vq", dict(dim=DIM, codebook_size=16, codebook_dim=None, l2_normalize=False)),
    "fsq": ("fsq", dict(levels=(4, 3, 5), dim=DIM)),
    "fsq_no_projection": ("fsq", dict(levels=(8, 5, 5, 5, 3, 2))),
    "lfq": ("lfq", dict(dim=DIM, codebook_dim=5, entropy_group_size=5)),
    "bsq": ("bsq", dict(dim=DIM, entropy_group_size=2)),
    "rvq": ("rvq", dict(dim=DIM, codebook_size=16, num_levels=3, quantize_dropout=True)),
    "rvq_projected": ("rvq", dict(dim=DIM, codebook_size=16, num_levels=2, codebook_dim=4, rotation_trick=True)),
    "msvq": ("msvq", dict(dim=DIM, codebook_size=16, scales=(1, 2, 4))),
    "kl": ("kl", dict(dim=DIM // 2)),
    "continuous": ("continuous", dict(dim=DIM, bound="tanh")),
    "ptq": ("ptq", dict(dim=DIM, bits=3)),
}
DISCRETE = [name for name, (kind, _) in CASES.items() if kind not in ("kl", "continuous")]
SPATIAL = {"grid": (4, 4), "sequence": (5,)}


def make(name: str):
    kind, kwargs = CASES[name]
    torch.manual_seed(0)
    return build_quantizer(kind, **kwargs)


def layouts(name: str):
    return ["grid"] if CASES[name][0] == "msvq" else ["grid", "sequence"]


def expected_ids_shape(name: str, batch: int, spatial: tuple[int, ...]) -> tuple[int, ...] | None:
    kind, kwargs = CASES[name]
    if kind in ("kl", "continuous"):
        return None
    if kind == "rvq":
        return (batch, *spatial, kwargs["num_levels"])
    if kind == "ptq":
        return (batch, *spatial, kwargs["dim"])
    if kind == "msvq":
        return (batch, sum(s * s for s in kwargs["scales"]))
    return (batch, *spatial)


def inputs(name: str, layout: str, batch: int = 2) -> torch.Tensor:
    quantizer_channels = DIM  # the KL posterior takes 2 * D = DIM channels
    return torch.randn(batch, quantizer_channels, *SPATIAL[layout], generator=torch.Generator().manual_seed(1))


PAIRS = [(name, layout) for name in CASES for layout in layouts(name)]


@pytest.mark.parametrize("name,layout", PAIRS)
def test_shapes_and_ids(name, layout):
    quantizer = make(name)
    z = inputs(name, layout)
    out = quantizer(z)
    expected_channels = DIM // 2 if CASES[name][0] == "kl" else DIM
    assert out.quantized.shape == (z.shape[0], expected_channels, *z.shape[2:])
    assert out.quantized.dtype == z.dtype
    assert out.loss.shape == () and torch.isfinite(out.loss)
    shape = expected_ids_shape(name, z.shape[0], z.shape[2:])
    if shape is None:
        assert out.ids is None and not quantizer.discrete and quantizer.codebook_size is None
    else:
        assert quantizer.discrete
        assert out.ids.dtype == torch.int64 and tuple(out.ids.shape) == shape
        valid = out.ids[out.ids >= 0]
        assert valid.min() >= 0 and valid.max() < quantizer.codebook_size
    assert quantizer.dim == expected_channels
    assert all(torch.is_tensor(v) and v.dim() == 0 for v in out.metrics.values())


@pytest.mark.parametrize("name", DISCRETE)
def test_ids_to_codes_reproduces_quantized(name):
    quantizer = make(name)
    for layout in layouts(name):
        z = inputs(name, layout)
        quantizer.train()
        quantizer(z)  # k-means / EMA state, as after training
        quantizer.eval()
        out = quantizer(z)
        torch.testing.assert_close(quantizer.ids_to_codes(out.ids), out.quantized, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,layout", PAIRS)
def test_gradient_reaches_input(name, layout):
    quantizer = make(name).train()
    z = inputs(name, layout).requires_grad_(True)
    out = quantizer(z)
    weights = torch.randn(out.quantized.shape, generator=torch.Generator().manual_seed(2))
    (out.quantized * weights).sum().add(out.loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


@pytest.mark.parametrize("name,layout", PAIRS)
def test_autocast_bf16_keeps_fp32_internals(name, layout):
    quantizer = make(name).eval()
    z = inputs(name, layout)
    reference = quantizer(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = quantizer(z)
        out_bf16 = quantizer(z.bfloat16())
    # fp32 input under autocast: bit-identical to no autocast (the math ran in fp32).
    assert out.quantized.dtype == torch.float32 and out.loss.dtype == torch.float32
    torch.testing.assert_close(out.quantized, reference.quantized, atol=0, rtol=0)
    if reference.ids is not None:
        assert torch.equal(out.ids, reference.ids)
    # bf16 input: bf16 output, still close to the fp32 result.
    assert out_bf16.quantized.dtype == torch.bfloat16
    assert torch.isfinite(out_bf16.loss)


@pytest.mark.parametrize("name", list(CASES))
def test_registry_round_trip_through_json(name):
    quantizer = make(name)
    kind = quantizer_kind(quantizer)
    assert kind == CASES[name][0]
    stored = json.loads(json.dumps({"kind": kind, "config": dataclasses.asdict(quantizer.config)}))
    rebuilt = quantizer_from_config(stored["kind"], stored["config"])
    assert rebuilt.config == quantizer.config
    rebuilt.load_state_dict(quantizer.state_dict())
    quantizer.eval()
    rebuilt.eval()
    z = inputs(name, layouts(name)[0])
    torch.testing.assert_close(rebuilt(z).quantized, quantizer(z).quantized)
    assert set(QUANTIZERS) == {"vq", "fsq", "lfq", "bsq", "rvq", "msvq", "kl", "continuous", "ptq"}


def test_registry_errors_are_clear():
    with pytest.raises(ValueError, match="unknown quantizer kind"):
        build_quantizer("nope")
    with pytest.raises(ValueError, match="unknown VQConfig fields"):
        quantizer_from_config("vq", {"dim": 4, "codebook_size": 8, "bogus": 1})


@pytest.mark.parametrize(
    "kind,kwargs",
    [
        ("vq", dict(dim=4, codebook_size=1)),
        ("vq", dict(dim=4, codebook_size=8, ema_decay=1.5)),
        ("vq", dict(dim=4, codebook_size=8, kmeans_iters=0)),
        ("fsq", dict(levels=(1, 5))),
        ("lfq", dict(dim=6, entropy_group_size=4)),
        ("bsq", dict(dim=4, inverse_temperature=0.0)),
        ("rvq", dict(dim=4, codebook_size=8, num_levels=2, quantize_dropout_min_levels=3)),
        ("msvq", dict(dim=4, codebook_size=8, scales=(1, 8, 4))),
        ("kl", dict(dim=4, logvar_min=5.0, logvar_max=1.0)),
        ("continuous", dict(dim=4, bound="sphere")),
        ("ptq", dict(dim=4, bits=0)),
    ],
)
def test_invalid_configs_raise_value_error(kind, kwargs):
    with pytest.raises(ValueError):
        build_quantizer(kind, **kwargs)
