import pytest
from sipfleet.devcluster.kubelet.restart import (
    BACKOFF_CAP,
    BACKOFF_RESET_AFTER,
    backoff_delay,
    next_failure_count,
    should_restart,
)


@pytest.mark.parametrize(
    ("policy", "exit_code", "expected"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 137, True),
        ("Never", 0, False),
        ("Never", 1, False),
    ],
)
def test_restart_policy(policy: str, exit_code: int, expected: bool) -> None:
    assert should_restart(policy, exit_code) is expected


def test_backoff_doubles_up_to_the_cap() -> None:
    delays = [backoff_delay(n) for n in range(0, 12)]
    assert delays[0] == 0.0
    assert delays[1:4] == [0.5, 1.0, 2.0]
    assert delays == sorted(delays)
    assert delays[-1] == BACKOFF_CAP


def test_a_long_run_resets_the_backoff_series() -> None:
    assert next_failure_count(5, ran_for=1.0) == 6
    assert next_failure_count(5, ran_for=BACKOFF_RESET_AFTER) == 1
