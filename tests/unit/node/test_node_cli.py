"""sipfleet-node command line: flags, environment, and helpful errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from sipfleet.node.cli import build_parser, parse_config
from sipfleet.node.presentation import SenderDisplay

ENV = (
    "SIPFLEET_ROLE",
    "SIPFLEET_NAME",
    "SIPFLEET_DOMAIN",
    "SIPFLEET_LISTEN",
    "SIPFLEET_SIP_PORT",
    "SIPFLEET_ADMIN_PORT",
    "SIPFLEET_TOKEN_FILE",
    "SIPFLEET_TREE_FANOUT",
    "SIPFLEET_SENDER_DISPLAY",
    "SIPFLEET_TRUSTED_PROXIES",
    "SIPFLEET_HOSTED_FILE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    return path


def args(token: Path, *extra: str) -> list[str]:
    return [
        "--role",
        "node",
        "--name",
        "node-1",
        "--domain",
        "example.com",
        "--listen",
        "127.0.0.11",
        "--token-file",
        str(token),
        *extra,
    ]


def test_help_names_every_env_var() -> None:
    text = build_parser().format_help()
    for name in ENV:
        assert name in text


def test_flags_and_defaults(token: Path) -> None:
    config, level = parse_config(args(token, "--tree-fanout", "3"))
    assert (config.role, config.name, config.listen) == ("node", "node-1", "127.0.0.11")
    assert (config.sip_port, config.admin_port, config.tree_fanout) == (5060, 8080, 3)
    assert config.token == "s3cret" and level == "INFO"
    assert config.sender_display is SenderDisplay.AUTO


def test_sender_display_by_flag_and_environment(
    token: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = parse_config(args(token, "--sender-display", "display-name"))
    assert config.sender_display is SenderDisplay.DISPLAY_NAME
    monkeypatch.setenv("SIPFLEET_SENDER_DISPLAY", "cpim")
    assert parse_config(args(token))[0].sender_display is SenderDisplay.CPIM


def test_environment(token: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPFLEET_ROLE", "main")
    monkeypatch.setenv("SIPFLEET_NAME", "main-0")
    monkeypatch.setenv("SIPFLEET_DOMAIN", "example.com")
    monkeypatch.setenv("SIPFLEET_LISTEN", "127.0.0.10")
    monkeypatch.setenv("SIPFLEET_SIP_PORT", "5070")
    monkeypatch.setenv("SIPFLEET_TOKEN_FILE", str(token))
    config, _ = parse_config(["--admin-port", "9090"])
    assert (config.role, config.sip_port, config.admin_port) == ("main", 5070, 9090)


def test_advertised_address(token: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults: nothing advertised (the listen address is written); a public
    address is allowed there, unlike for --listen; the environment works too."""
    config = parse_config(args(token))[0]
    assert (config.advertise_host, config.advertise_udp_port, config.advertise_tcp_port) == (
        "",
        0,
        0,
    )
    config = parse_config(args(token, "--advertise-host", "203.0.113.5"))[0]
    assert config.advertise_host == "203.0.113.5" and config.listen == "127.0.0.11"
    monkeypatch.setenv("SIPFLEET_ADVERTISE_UDP_PORT", "30060")
    monkeypatch.setenv("SIPFLEET_ADVERTISE_TCP_PORT", "30061")
    config = parse_config(args(token, "--advertise-host", "2001:db8::5"))[0]
    assert (config.advertise_udp_port, config.advertise_tcp_port) == (30060, 30061)


def test_trusted_proxies(token: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """None by default; a comma-separated list by flag or environment."""
    assert parse_config(args(token))[0].trusted_sources == frozenset()
    monkeypatch.setenv("SIPFLEET_TRUSTED_PROXIES", "192.0.2.1, 2001:db8::7")
    assert parse_config(args(token))[0].trusted_sources == {"192.0.2.1", "2001:db8::7"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--role", "boss"], "role 'boss'"),
        (["--listen", "example.com"], "not an IP address"),
        (["--listen", "8.8.8.8"], "loopback or private"),
        (["--sip-port", "70000"], "outside 0..65535"),
        (["--tree-fanout", "0"], "fanout 0"),
        (["--sip-port", "five"], "invalid int value"),
        (["--sender-display", "loud"], "invalid SenderDisplay value: 'loud'"),
        (["--advertise-host", "sip.example.com"], "advertised address 'sip.example.com'"),
        (["--advertise-tcp-port", "65536"], "advertised TCP port 65536 is outside"),
        (["--tls-cert-file", "/x/tls.crt"], "needs both --tls-cert-file and --tls-key-file"),
        (["--wss-port", "8443"], "--wss-port needs the TLS certificate"),
        (["--tls-port", "65536"], "TLS port 65536 is outside"),
        (["--s2s-transport", "udp"], "server-to-server transport 'udp' is not tcp or tls"),
        (["--s2s-transport", "tls"], "--s2s-transport tls needs the TLS certificate"),
        (
            ["--tls-cert-file", "/nonexistent/tls.crt", "--tls-key-file", "/nonexistent/tls.key"],
            "cannot use certificate /nonexistent/tls.crt",
        ),
        (["--trusted-proxies", "10.0.0.1,edge.example.com"], "'edge.example.com' is not an IP"),
    ],
)
def test_bad_values_say_what_is_wrong(
    token: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(args(token, *extra))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_token_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(args(tmp_path / "absent"))
    err = capsys.readouterr().err
    assert "does not exist" in err and "SIPFLEET_TOKEN_FILE" in err


def test_empty_token_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SystemExit):
        parse_config(args(empty))
    assert "is empty" in capsys.readouterr().err


def test_missing_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config([])
    assert "--role is required: pass --role or set SIPFLEET_ROLE" in capsys.readouterr().err


def test_bad_env_value(
    token: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIPFLEET_SIP_PORT", "abc")
    with pytest.raises(SystemExit):
        parse_config(args(token))
    assert "SIPFLEET_SIP_PORT='abc' is not a valid int" in capsys.readouterr().err


def test_tls_and_websocket_are_off_by_default(token: Path) -> None:
    config = parse_config(args(token))[0]
    assert config.tls is None
    assert (config.ws_port, config.wss_port, config.tls_port) == (0, 0, 5061)


def test_hosted_file(token: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """None by default (every start is a fresh server); by flag or environment."""
    assert parse_config(args(token))[0].hosted_file == ""
    monkeypatch.setenv("SIPFLEET_HOSTED_FILE", "/tmp/sipfleet-hosted.json")
    assert parse_config(args(token))[0].hosted_file == "/tmp/sipfleet-hosted.json"


def test_expected_groups_file(token: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """None by default; by flag or environment (the operator sets it on main Pods)."""
    assert parse_config(args(token))[0].expected_groups_file == ""
    monkeypatch.setenv("SIPFLEET_EXPECTED_GROUPS_FILE", "/etc/sipfleet/podinfo/expected-groups")
    config = parse_config(args(token))[0]
    assert config.expected_groups_file == "/etc/sipfleet/podinfo/expected-groups"
