"""Adapters for checkpoints of other projects (``ARCHITECTURE.md``: ``convert/``)."""

from artok.convert.llamagen import convert_state_dict as convert_llamagen_state_dict
from artok.convert.llamagen import load_llamagen

__all__ = ["convert_llamagen_state_dict", "load_llamagen"]
