"""The one error every dataset loader raises for problems a user can fix."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset could not be loaded; the message is one line that says how to fix it.

    The CLI prints the message without a traceback, so it never spans several lines.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class DatasetWarning(UserWarning):
    """Something a loader left out or changed (skipped or resized files); the data still loaded.

    A category of its own so that the CLI can print these as one ``artok: warning: ...`` line
    instead of Python's default ``file:line: UserWarning: ...`` form.
    """
