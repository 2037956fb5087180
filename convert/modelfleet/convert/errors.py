"""The converter's one error type: a message for a person and the exit status it maps to.

Raised by every step; only __main__ turns it into output and an exit status. No torch here.
"""

from __future__ import annotations

USAGE = 2
"""Exit status for a source or flag that cannot be converted as given (nothing was built)."""
FAILED = 1
"""Exit status for a conversion that ran but produced nothing acceptable (no path passed, mismatch)."""


class ConvertError(Exception):
    """A conversion stopped; `message` says why and what to do, `status` is the process exit status."""

    def __init__(self, message: str, *, status: int = USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
