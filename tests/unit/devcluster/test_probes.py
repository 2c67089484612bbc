import pytest
from sipfleet.devcluster.kubelet.probes import (
    ProbeSettings,
    ProbeTracker,
    loopback_host,
    resolve_port,
)


def test_readiness_needs_success_threshold_and_failure_threshold() -> None:
    tracker = ProbeTracker(success_threshold=2, failure_threshold=3)
    assert tracker.record(True) is None
    assert tracker.record(True) is True
    assert tracker.record(False) is True
    assert tracker.record(False) is True
    assert tracker.record(False) is False
    assert tracker.record(True) is False  # one success is not enough
    assert tracker.record(True) is True


def test_failures_must_be_consecutive() -> None:
    tracker = ProbeTracker(success_threshold=1, failure_threshold=2)
    for ok in (False, True, False, True, False):
        assert tracker.record(ok) is not False


def test_settings_defaults_follow_kubernetes() -> None:
    settings = ProbeSettings.from_spec({"httpGet": {"port": 80}})
    assert settings == ProbeSettings(0.0, 10.0, 1.0, 1, 3)


def test_named_ports_resolve_from_the_container() -> None:
    container = {"ports": [{"name": "admin", "containerPort": 8080}]}
    assert resolve_port("admin", container) == 8080
    assert resolve_port(81, container) == 81
    assert resolve_port("82", container) == 82
    with pytest.raises(ValueError, match="sip"):
        resolve_port("sip", container)


def test_probes_only_target_loopback() -> None:
    assert loopback_host("127.0.0.12") == "127.0.0.12"
    assert loopback_host("localhost") == "127.0.0.1"
    for host in ("10.0.0.1", "example.com"):
        with pytest.raises(ValueError, match="loopback"):
            loopback_host(host)
