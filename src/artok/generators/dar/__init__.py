"""D-AR: a plain next-token GPT over the sequential diffusion tokenizer's 1D tokens, with previews
from prefixes (Gao, Shou et al., https://arxiv.org/abs/2505.23660)."""

from artok.generators.dar.model import DARConfig, DARGenerator

__all__ = ["DARConfig", "DARGenerator"]
