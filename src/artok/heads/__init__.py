"""What a generator predicts per token."""

from artok.heads.categorical import CategoricalHead

__all__ = ["CategoricalHead"]
