"""What the kinds' fast engines share: device defaults (bf16, compile, CUDA graphs on CUDA), the
bf16 copy of a generator, per-row KV caches and the guided row layout (raster, next-scale and
MaskGIT engines, ReCAP)."""

from __future__ import annotations

import copy

import torch

from artok.nn import KVCache
from artok.sampling.schedules import guidance_rows


class RowKVCache(KVCache):
    """A static KV cache that also writes at *per-row* positions and can expose only a prefix.

    ``update(input_pos, k, v)``: ``input_pos`` is either ``T`` positions shared by all rows (the
    plain decode step, written with ``index_copy_`` exactly like `KVCache`) or ``rows x T``
    per-row positions (written with ``scatter_``). ``k``/``v`` may have fewer rows than the
    buffers; the first rows are used. The returned buffers are cut to ``self.length`` slots.
    """

    def __init__(self, batch_size: int, num_heads: int, max_len: int, head_dim: int, dtype, device) -> None:
        super().__init__(batch_size, num_heads, max_len, head_dim, dtype, device)
        self.length = max_len

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = k.shape[0]
        k_cache, v_cache = (self.k, self.v) if rows == self.k.shape[0] else (self.k[:rows], self.v[:rows])
        if input_pos.dim() == 1:
            k_cache.index_copy_(2, input_pos, k.to(k_cache.dtype))
            v_cache.index_copy_(2, input_pos, v.to(v_cache.dtype))
        else:
            index = input_pos[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
            k_cache.scatter_(2, index, k.to(k_cache.dtype))
            v_cache.scatter_(2, index, v.to(v_cache.dtype))
        if self.length == k_cache.shape[2]:
            return k_cache, v_cache
        return k_cache[:, :, : self.length], v_cache[:, :, : self.length]


def default_device_options(device: torch.device) -> dict:
    """What ``"auto"`` means on ``device``: bf16 + compile + CUDA graphs + bucketed attention on
    CUDA; fp32, eager, full-cache attention on CPU (full-cache reads keep CPU outputs bit-identical
    to `sample_raster`)."""
    cuda = device.type == "cuda"
    return {"dtype": torch.bfloat16 if cuda else None, "compile": cuda, "cuda_graphs": cuda,
            "attention": "bucketed" if cuda else "full"}


def prepare_engine(generator, batch_size: int, dtype, compile, cuda_graphs, fallback: str):
    """What every engine checks and resolves first: a positive batch size, a categorical head
    (``fallback`` names the loop for other heads), and the options (`resolve_engine_options`).
    Returns ``(model in dtype, eval mode; device, dtype, compile, cuda_graphs)``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    head = getattr(generator.config, "head", "categorical")
    if head != "categorical":
        raise ValueError(f"the sampling engines drive categorical heads; this generator has a {head!r} head "
                         f"(use {fallback} for that head)")
    param = next(generator.parameters())
    dtype, compile, cuda_graphs = resolve_engine_options(param.device, param.dtype, dtype, compile, cuda_graphs)
    return with_dtype(generator, dtype).eval(), param.device, dtype, compile, cuda_graphs


def resolve_engine_options(device: torch.device, param_dtype: torch.dtype, dtype, compile, cuda_graphs):
    """``(dtype, compile, cuda_graphs)`` with every ``"auto"`` resolved for ``device``
    (`default_device_options`); CUDA graphs are dropped off CUDA and need ``compile``."""
    auto = default_device_options(device)
    if dtype in (None, "auto"):
        dtype = auto["dtype"] or param_dtype
    if compile == "auto":
        compile = auto["compile"]
    if cuda_graphs == "auto":
        cuda_graphs = auto["cuda_graphs"]
    if cuda_graphs and device.type != "cuda":
        cuda_graphs = False  # CUDA graphs exist only on CUDA; on CPU this is a no-op by design
    if cuda_graphs and not compile:
        raise ValueError("cuda_graphs=True needs compile=True (graphs come from torch.compile's reduce-overhead mode)")
    return dtype, bool(compile), bool(cuda_graphs)


def with_dtype(generator, dtype: torch.dtype):
    """``generator`` itself, or a copy whose parameters are in ``dtype`` (the generator passed in is
    never modified; buffers such as rotary tables and masks keep their dtypes)."""
    if next(generator.parameters()).dtype == dtype:
        return generator
    generator = copy.deepcopy(generator)
    for parameter in generator.parameters():
        parameter.data = parameter.data.to(dtype)
    return generator


def engine_rows(engine, labels: torch.Tensor, guided: bool) -> torch.Tensor:
    """``labels`` checked against an engine's ``batch_size`` and ``guidance``, as the rows it runs:
    ``[labels; null]`` under guidance, else ``labels``."""
    if labels.dim() != 1 or not 1 <= labels.shape[0] <= engine.batch_size:
        raise ValueError(f"labels must be 1D with 1..{engine.batch_size} entries, got shape {tuple(labels.shape)}")
    if guided and not engine.guidance:
        raise ValueError("this engine was built with guidance=False; rebuild it with guidance=True to use CFG")
    return guidance_rows(labels, engine.model.null_class, guided)
