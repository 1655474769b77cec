"""Image <-> token architectures."""

from artok.tokenizers.base import Tokenizer, TokenizerOutput
from artok.tokenizers.cnn import CNNTokenizer, CNNTokenizerConfig

__all__ = ["CNNTokenizer", "CNNTokenizerConfig", "Tokenizer", "TokenizerOutput"]
