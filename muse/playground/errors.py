"""The playground's one kind of problem to show the user: `PlaygroundError`."""

from __future__ import annotations


class PlaygroundError(ValueError):
    """A message for the user (about their input, or a model that is not there): shown as it is, with
    a title, never as a traceback."""

    def __init__(self, message: str, title: str = "Error") -> None:
        super().__init__(message)
        self.title = title
