"""artok: autoregressive visual generation over discrete and continuous tokens."""

from artok.tokens import Tokens, TokenSpec

__version__ = "0.1.0"
__all__ = ["Tokens", "TokenSpec", "__version__"]
