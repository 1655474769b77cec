"""Image <-> token architectures."""

from artok.tokenizers.autoencoder import AutoencoderConfig, AutoencoderTokenizer
from artok.tokenizers.base import Tokenizer, TokenizerOutput
from artok.tokenizers.cnn import CNNTokenizer, CNNTokenizerConfig
from artok.tokenizers.dar import DARTokenizer, DARTokenizerConfig
from artok.tokenizers.titok import TiTokConfig, TiTokTokenizer
from artok.tokenizers.titok_vqgan import MaskGITVQGAN, MaskGITVQGANConfig
from artok.tokenizers.vit1d import ViT1DTokenizer, ViT1DTokenizerConfig

__all__ = ["AutoencoderConfig", "AutoencoderTokenizer", "CNNTokenizer", "CNNTokenizerConfig", "DARTokenizer", "DARTokenizerConfig", "MaskGITVQGAN", "MaskGITVQGANConfig", "TiTokConfig", "TiTokTokenizer", "Tokenizer", "TokenizerOutput", "ViT1DTokenizer", "ViT1DTokenizerConfig"]
