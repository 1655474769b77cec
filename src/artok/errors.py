"""Errors a user can fix: the CLI prints them as one line instead of a traceback."""

from __future__ import annotations

from artok.data.errors import DatasetError
from artok.generators.base import IncompatibleTokensError

# ValueError covers config validation (every config's __post_init__), shape checks and bad JSON;
# FileNotFoundError/NotADirectoryError/PermissionError cover paths.
USER_ERRORS = (DatasetError, IncompatibleTokensError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError)
