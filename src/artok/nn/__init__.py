"""Shared layers: imported by every model, never copied."""

from artok.nn.attention import Attention, KVCache
from artok.nn.mlp import SwiGLU, swiglu_hidden_dim
from artok.nn.norm import RMSNorm
from artok.nn.rope import apply_rope, rope_1d_table, rope_2d_table
from artok.nn.transformer import TransformerBlock

__all__ = [
    "Attention",
    "KVCache",
    "RMSNorm",
    "SwiGLU",
    "TransformerBlock",
    "apply_rope",
    "rope_1d_table",
    "rope_2d_table",
    "swiglu_hidden_dim",
]
