"""VAR's own transformer block, the ``block="var"`` configuration of artok's next-scale generator
(Tian et al., "Visual Autoregressive Modeling", https://arxiv.org/abs/2404.02905; the published
``var_d16.pth`` .. ``var_d30.pth`` use it).

Everything around the blocks is the same in both configurations (class / start / position / level
embeddings, word embedding of the downsampled ``f_hat``, block-causal attention, the final adaLN and
a linear head), so artok's next-scale sampler, its recompute reference and `NextScaleEngine` run a
VAR model unchanged. What VAR's block does differently from artok's `AdaLNTransformerBlock`:

- attention: a fused bias-free QKV projection plus learned query and value biases (the key bias is
  zero), queries and keys **l2-normalised** per head, the query multiplied by a learned per-head
  scale ``exp(min(log_scale, log 100))`` (initialised to 4) and a softmax scale of 1
  (``attn_l2_norm``; without it, VAR's ``0.25 / sqrt(head_dim)``), an output projection with bias;
- MLP: ``fc2(gelu_tanh(fc1(x)))`` with biases, hidden ``4 * dim``;
- adaLN: six vectors in VAR's order ``gamma1, gamma2, scale1, scale2, shift1, shift2`` from
  ``Linear(SiLU(c))`` per block (``ada_lin``), or — VAR's ``shared_aln`` — from one
  ``Linear(SiLU(c))`` shared by all blocks (``shared_ada_lin``) plus a learned per-block offset
  (``ada_gss``); one non-affine LayerNorm serves both residual branches;
- the head has a bias; initialisation follows VAR's ``init_weights``.

Not carried over: stochastic depth (VAR trains with drop-path ``0.1 * depth / 24``), which changes
training only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from artok.heads.categorical import CategoricalHead
from artok.nn.adaln import modulate

#: VAR clamps the learned log attention scale at log(100)
MAX_LOG_SCALE = math.log(100.0)


class VARAttention(nn.Module):
    """VAR's self-attention (``SelfAttention`` in ``basic_var.py``); same cache protocol as
    `artok.nn.Attention` (``kv_cache``, ``num_heads``, ``head_dim``)."""

    def __init__(self, dim: int, num_heads: int, l2_norm: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.l2_norm, self.dropout = l2_norm, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)
        if l2_norm:
            self.log_scale = nn.Parameter(torch.full((1, num_heads, 1, 1), math.log(4.0)))
        self.scale = 1.0 if l2_norm else 0.25 / math.sqrt(self.head_dim)
        self.kv_cache = None

    def forward(self, x: torch.Tensor, rope=None, mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """``x``: ``B x T x dim``; ``mask``: boolean ``T x S`` (True = attend) or None. ``rope`` is
        not used (VAR's positions are learned and added to the inputs)."""
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = rearrange(F.linear(x, self.qkv.weight, bias), "b t (three h d) -> three b h t d", three=3,
                            h=self.num_heads)
        if self.l2_norm:
            q = F.normalize(q, dim=-1) * self.log_scale.clamp_max(MAX_LOG_SCALE).exp()
            k = F.normalize(k, dim=-1)
        if self.kv_cache is not None and input_pos is not None:
            k, v = self.kv_cache.update(input_pos, k, v)
            k, v = k.to(q.dtype), v.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None,
                                             dropout_p=self.dropout if self.training else 0.0, scale=self.scale)
        return self.proj(rearrange(out, "b h t d -> b t (h d)"))


class GELUMLP(nn.Module):
    """``fc2(gelu_tanh(fc1(x)))`` with biases (VAR's ``FFN``)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(x), approximate="tanh")))


class VARBlock(nn.Module):
    """VAR's ``AdaLNSelfAttn``: ``x + gamma1 * attn(modulate(norm(x), shift1, scale1))``, then the
    same for the MLP. ``shared``: VAR's ``shared_ada_lin`` (held by the generator, referenced here,
    not registered twice); None for a per-block modulation."""

    def __init__(self, dim: int, num_heads: int, hidden_dim: int, *, l2_norm: bool = True, norm_eps: float = 1e-6,
                 dropout: float = 0.0, shared: nn.Linear | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=norm_eps)
        self.attention = VARAttention(dim, num_heads, l2_norm=l2_norm, dropout=dropout)
        self.ffn = GELUMLP(dim, hidden_dim, dropout=dropout)
        self._shared = (shared,) if shared is not None else None  # a tuple: not a registered submodule
        if shared is None:
            self.modulation = nn.Linear(dim, 6 * dim)
        else:
            self.modulation_offset = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def modulation_vectors(self, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``cond`` ``B x dim`` -> six ``B x 1 x dim`` vectors (gamma1, gamma2, scale1, scale2, shift1, shift2)."""
        if self._shared is None:
            vectors = self.modulation(F.silu(cond)).view(-1, 6, self.dim)
        else:
            vectors = self._shared[0](F.silu(cond)).view(-1, 6, self.dim) + self.modulation_offset
        return vectors.unsqueeze(1).unbind(2)

    def forward(self, x, cond, rope=None, mask=None, input_pos=None, is_causal: bool = False) -> torch.Tensor:
        gamma1, gamma2, scale1, scale2, shift1, shift2 = self.modulation_vectors(cond)
        h = modulate(self.norm(x), shift1, scale1)
        x = x + self.attention(h, mask=mask, input_pos=input_pos, is_causal=is_causal) * gamma1
        return x + self.ffn(modulate(self.norm(x), shift2, scale2)) * gamma2


class BiasedCategoricalHead(CategoricalHead):
    """`CategoricalHead` whose projection has a bias (VAR's ``head``)."""

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__(dim, vocab_size)
        self.proj = nn.Linear(dim, vocab_size)


def build_var_blocks(dim: int, depth: int, num_heads: int, hidden_dim: int, *, shared_adaln: bool, l2_norm: bool,
                     dropout: float = 0.0) -> tuple[nn.ModuleList, nn.Linear | None]:
    """``depth`` `VARBlock`s and, with ``shared_adaln``, the shared modulation they reference."""
    shared = nn.Linear(dim, 6 * dim) if shared_adaln else None
    blocks = nn.ModuleList(VARBlock(dim, num_heads, hidden_dim, l2_norm=l2_norm, dropout=dropout, shared=shared)
                           for _ in range(depth))
    return blocks, shared


@torch.no_grad()
def init_var_weights(generator, adaln: float = 0.5, adaln_gamma: float = 1e-5, head: float = 0.02) -> None:
    """VAR's ``init_weights`` (automatic std ``sqrt(1 / (3 dim))``) on a ``block="var"`` generator;
    the frozen quantizer copy is left alone. VAR draws from a normal truncated at +-2, which at these
    stds (< 0.06) is more than 30 standard deviations out, so a plain normal draw is the same law
    (and several times faster on CPU)."""
    dim, depth = generator.config.dim, generator.config.depth
    std = (1 / dim / 3) ** 0.5
    for name, module in generator.named_modules():
        if name.startswith("scale_quantizer"):
            continue
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
    for param in (generator.start_position, generator.position):
        nn.init.normal_(param, std=std)
    generator.head.proj.weight.mul_(head)
    generator.out_norm.modulation.weight.mul_(adaln)
    for block in generator.blocks:
        block.attention.proj.weight.div_(math.sqrt(2 * depth))
        block.ffn.fc2.weight.div_(math.sqrt(2 * depth))
        if block._shared is None:
            block.modulation.weight[2 * dim:].mul_(adaln)
            block.modulation.weight[: 2 * dim].mul_(adaln_gamma)
        else:
            block.modulation_offset[2:].mul_(adaln)
            block.modulation_offset[:2].mul_(adaln_gamma)
