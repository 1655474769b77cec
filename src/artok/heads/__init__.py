"""What a generator predicts per token.

Discrete heads (`CategoricalHead`, `BitwiseHead`, `DimwiseHead`) map backbone states to
distributions over ids; continuous heads (`DiffusionHead`, `FlowHead`) model a continuous token
given a condition vector and are interchangeable (same constructor shape and ``loss(z, target)``).
Which head fits which `TokenSpec` is decided in `artok.generators.head_support`.
"""

from artok.heads.bitwise import BitEmbedding, BitwiseHead
from artok.heads.categorical import CategoricalHead
from artok.heads.diffusion import DiffusionHead, alphas_cumprod_schedule
from artok.heads.dimwise import ChannelEmbedding, DimwiseHead
from artok.heads.flow import FlowHead

__all__ = [
    "BitEmbedding",
    "BitwiseHead",
    "CategoricalHead",
    "ChannelEmbedding",
    "DiffusionHead",
    "DimwiseHead",
    "FlowHead",
    "alphas_cumprod_schedule",
]
