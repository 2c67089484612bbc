"""Command line and environment parsing of sipfleet-operator."""

from __future__ import annotations

import pytest
from sipfleet.operator.cli import build_parser, kopf_settings, parse_options


def test_namespaces_and_defaults() -> None:
    o = parse_options(["-n", "a", "-n", "b"])
    assert o.namespaces == ("a", "b") and not o.all_namespaces
    assert o.interval == 2.0 and o.peering is None and o.metrics_port == 0
    assert o.lease_namespace == "a"


def test_environment_supplies_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPFLEET_OPERATOR_NAMESPACES", "x, y")
    monkeypatch.setenv("SIPFLEET_OPERATOR_INTERVAL", "0.5")
    monkeypatch.setenv("SIPFLEET_OPERATOR_PEERING", "sipfleet")
    monkeypatch.setenv("SIPFLEET_OPERATOR_METRICS_PORT", "9464")
    o = parse_options([])
    assert o.namespaces == ("x", "y")
    assert (o.interval, o.peering, o.metrics_port) == (0.5, "sipfleet", 9464)


def test_command_line_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPFLEET_OPERATOR_INTERVAL", "5")
    assert parse_options(["-A", "--interval", "1"]).interval == 1.0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "choose the scope"),
        (["-A", "--interval", "0"], "must be > 0"),
        (["-A", "--interval", "soon"], "not a number"),
        (["-A", "--metrics-port", "70000"], "outside 0..65535"),
        (["-A", "--lease-seconds", "1"], "too short"),
        (["-A", "--liveness", "localhost:8081"], "http://ADDR:PORT/healthz"),
        (["-A", "-n", "x"], "not allowed with"),
    ],
)
def test_bad_options_name_the_problem(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_options(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_help_documents_every_option() -> None:
    text = build_parser().format_help()
    for flag in (
        "--namespace",
        "--all-namespaces",
        "--interval",
        "--peering",
        "--metrics-port",
        "--liveness",
        "--lease-seconds",
        "--kubeconfig",
    ):
        assert flag in text


def test_failed_api_requests_are_retried_at_most_2s_apart_for_over_a_minute() -> None:
    """After an API server outage the operator resumes within ~2 s of its return
    (kopf's default backoffs reach 21 s), and keeps retrying through a minute's outage."""
    backoffs = list(kopf_settings().networking.error_backoffs)
    assert max(backoffs) <= 2.0
    assert sum(backoffs) >= 60.0
