"""The one shape of a domain error, whichever capability raises it (registry, lifecycle, scanning): a code
in that capability's vocabulary, a message, and what the edge may need to answer it. Services raise them;
only the faces translate a code to a wire error, each through its own total table."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "UNKNOWN"

    def __init__(self, message: str, detail: Any = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.extra = extra
