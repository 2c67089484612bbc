"""Restart decisions: the Pod's restartPolicy and the crash-loop back-off."""

from __future__ import annotations

BACKOFF_BASE = 0.5
BACKOFF_CAP = 20.0
# A container that ran this long before exiting starts a fresh back-off series.
BACKOFF_RESET_AFTER = 60.0


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether a container that exited with `exit_code` is started again."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def backoff_delay(consecutive_failures: int) -> float:
    """Seconds to wait before restart number `consecutive_failures` (1-based) of a series."""
    if consecutive_failures <= 0:
        return 0.0
    return float(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (consecutive_failures - 1)))


def next_failure_count(previous: int, ran_for: float) -> int:
    """The back-off series continues unless the container ran long enough."""
    return 1 if ran_for >= BACKOFF_RESET_AFTER else previous + 1
