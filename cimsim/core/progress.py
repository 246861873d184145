"""How long-running library calls report progress without knowing who is watching.

The library calls ``stage(description, total)`` and then ``advance()``; the CLI implements this
with a rich progress bar, tests and notebooks pass nothing (:class:`Silent`).
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def stage(self, description: str, total: int) -> None:
        """A new stage of ``total`` steps begins."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps of the current stage are done."""

    def log(self, message: str) -> None:
        """A one-line message for the user (kept out of result files)."""


class Silent:
    """Reports nothing."""

    def stage(self, description: str, total: int) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass

    def log(self, message: str) -> None:
        pass
