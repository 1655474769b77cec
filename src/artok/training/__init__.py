"""Training loops, optimisers, EMA and checkpoints."""

from artok.training.checkpoint import load_checkpoint, save_checkpoint
from artok.training.generator_trainer import encode_dataset, train_generator
from artok.training.loop import TrainConfig, TrainResult, batch_indices, train
from artok.training.tokenizer_trainer import train_tokenizer

__all__ = [
    "TrainConfig",
    "TrainResult",
    "batch_indices",
    "encode_dataset",
    "load_checkpoint",
    "save_checkpoint",
    "train",
    "train_generator",
    "train_tokenizer",
]
