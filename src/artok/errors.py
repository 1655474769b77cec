"""Errors a user can fix: the CLI prints them as one line instead of a traceback."""

from __future__ import annotations

import torch

from artok.data.errors import DatasetError
from artok.generators.base import IncompatibleTokensError

# ValueError covers config validation (every config's __post_init__, artok.typed_config), shape
# checks, bad JSON and training divergence; OSError covers paths, permissions and a full disk;
# out-of-memory is fixed with a smaller batch.
USER_ERRORS = (DatasetError, IncompatibleTokensError, ValueError, OSError, MemoryError, torch.OutOfMemoryError)
