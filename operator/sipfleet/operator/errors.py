"""Errors shared by the control loop and the runtime."""

from __future__ import annotations


class NotReady(Exception):
    """A prerequisite is missing; ``reason`` goes into the Degraded condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


__all__ = ["NotReady"]
