"""Image <-> token architectures."""

from artok.tokenizers.autoencoder import AutoencoderConfig, AutoencoderTokenizer
from artok.tokenizers.base import Tokenizer, TokenizerOutput
from artok.tokenizers.cnn import CNNTokenizer, CNNTokenizerConfig
from artok.tokenizers.dar import DARTokenizer, DARTokenizerConfig
from artok.tokenizers.vit1d import ViT1DTokenizer, ViT1DTokenizerConfig

__all__ = ["AutoencoderConfig", "AutoencoderTokenizer", "CNNTokenizer", "CNNTokenizerConfig", "DARTokenizer", "DARTokenizerConfig", "Tokenizer", "TokenizerOutput", "ViT1DTokenizer", "ViT1DTokenizerConfig"]
