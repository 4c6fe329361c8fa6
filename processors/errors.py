"""The one error a processor raises on purpose: this input can never succeed."""

from __future__ import annotations


class InputRejectedError(Exception):
    """A bad input, with a reason class for metrics and a reason a person understands."""

    def __init__(self, reason_class: str, reason: str) -> None:
        super().__init__(f"{reason_class}: {reason}")
        self.reason_class = reason_class
        self.reason = reason
