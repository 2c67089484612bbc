"""`sipfleet-node`: command line and environment parsing, then run the server."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sipfleet.node.auth.credentials import CredentialsError, CredentialStore
from sipfleet.node.config import Config, ConfigError
from sipfleet.node.presentation import SenderDisplay
from sipfleet.node.tls import Certificates, TlsError

_OPTIONS: list[tuple[str, str, type, object, str]] = [
    # flag, env var, type, default (None = required), help
    ("--role", "SIPFLEET_ROLE", str, None, "server role: main (group entry point) or node"),
    ("--name", "SIPFLEET_NAME", str, None, "server name, unique in the fleet (e.g. the pod name)"),
    ("--domain", "SIPFLEET_DOMAIN", str, None, "SIP domain of the group URIs (e.g. example.com)"),
    ("--listen", "SIPFLEET_LISTEN", str, None, "IP address to listen on (SIP and admin API)"),
    ("--sip-port", "SIPFLEET_SIP_PORT", int, 5060, "SIP port, UDP and TCP"),
    (
        "--advertise-host",
        "SIPFLEET_ADVERTISE_HOST",
        str,
        "",
        "IP address members reach this server at (a node or Service address), written "
        "into Via, Contact, Refer-To, shard URIs and SDP; empty: the listen address",
    ),
    (
        "--advertise-udp-port",
        "SIPFLEET_ADVERTISE_UDP_PORT",
        int,
        0,
        "UDP port members reach this server at (e.g. a NodePort); 0: the SIP port",
    ),
    (
        "--advertise-tcp-port",
        "SIPFLEET_ADVERTISE_TCP_PORT",
        int,
        0,
        "TCP port members reach this server at; 0: the SIP port",
    ),
    (
        "--tls-cert-file",
        "SIPFLEET_TLS_CERT_FILE",
        str,
        "",
        "PEM certificate chain for SIP over TLS and wss (tls.crt of a Secret, reloaded "
        "when it changes; docs/transport.md); empty: no TLS",
    ),
    ("--tls-key-file", "SIPFLEET_TLS_KEY_FILE", str, "", "PEM private key (tls.key)"),
    ("--tls-port", "SIPFLEET_TLS_PORT", int, 5061, "SIP over TLS port (sips:), with a certificate"),
    (
        "--tls-ca-file",
        "SIPFLEET_TLS_CA_FILE",
        str,
        "",
        "PEM CAs trusted, besides the system's, when this server opens a TLS connection",
    ),
    (
        "--advertise-tls-port",
        "SIPFLEET_ADVERTISE_TLS_PORT",
        int,
        0,
        "TLS port members reach this server at; 0: the TLS port",
    ),
    ("--ws-port", "SIPFLEET_WS_PORT", int, 0, "SIP over WebSocket port (RFC 7118 ws); 0: off"),
    (
        "--wss-port",
        "SIPFLEET_WSS_PORT",
        int,
        0,
        "SIP over secure WebSocket port (wss, uses the TLS certificate); 0: off",
    ),
    (
        "--s2s-transport",
        "SIPFLEET_S2S_TRANSPORT",
        str,
        "tcp",
        "requests to the fleet's other servers: tcp, or tls (to their TLS port, their "
        "certificate checked against --tls-ca-file, the fleet's CA)",
    ),
    ("--admin-port", "SIPFLEET_ADMIN_PORT", int, 8080, "admin HTTP API port"),
    (
        "--token-file",
        "SIPFLEET_TOKEN_FILE",
        str,
        None,
        "file holding the admin bearer token, also the server-to-server HMAC key",
    ),
    (
        "--tree-fanout",
        "SIPFLEET_TREE_FANOUT",
        int,
        8,
        "children per server in the distribution tree",
    ),
    ("--rate-limit", "SIPFLEET_RATE_LIMIT", float, 500.0, "requests/s allowed per source IP"),
    ("--rate-burst", "SIPFLEET_RATE_BURST", float, 1000.0, "burst size of the per-source limit"),
    (
        "--sender-display",
        "SIPFLEET_SENDER_DISPLAY",
        SenderDisplay,
        SenderDisplay.AUTO,
        "how members' phones see who wrote a group message: auto, cpim, display-name "
        "or prefix, for groups whose shard request names none "
        "(docs/media-and-messages.md)",
    ),
    (
        "--shutdown-seconds",
        "SIPFLEET_SHUTDOWN_SECONDS",
        float,
        30.0,
        "after SIGTERM: seconds to move members away before exiting (the grace period)",
    ),
    (
        "--drain-rate",
        "SIPFLEET_DRAIN_RATE",
        float,
        50.0,
        "after SIGTERM: members/s moved to the group's other servers",
    ),
    (
        "--hosted-file",
        "SIPFLEET_HOSTED_FILE",
        str,
        "",
        "file (in the Pod's emptyDir) where the server keeps its groups: a restarted "
        "process finding it answers 503 + Retry-After, not 404, until they are back; "
        "empty: none",
    ),
    (
        "--expected-groups-file",
        "SIPFLEET_EXPECTED_GROUPS_FILE",
        str,
        "",
        "file naming the groups the operator expects a new Pod of this server to host "
        '(JSON {"groups": {uri: 0}}; the operator mounts it from a Pod annotation): with '
        "no hosted file, they get 503 + Retry-After, not 404, until they are back; "
        "empty: none",
    ),
    (
        "--credentials-file",
        "SIPFLEET_CREDENTIALS_FILE",
        str,
        "",
        "JSON/YAML file of member digest credentials, realm -> user -> algorithm -> HA1 "
        "(mount it from a Secret; docs/security.md); empty: none",
    ),
    (
        "--default-policy",
        "SIPFLEET_DEFAULT_POLICY",
        str,
        "auto",
        "access policy of groups the operator set none for: open, authenticated or auto "
        "(authenticated when the credentials cover the domain)",
    ),
    (
        "--nonce-seconds",
        "SIPFLEET_NONCE_SECONDS",
        float,
        300.0,
        "seconds a digest nonce stays valid before members are challenged with stale=true",
    ),
    (
        "--lockout-failures",
        "SIPFLEET_LOCKOUT_FAILURES",
        int,
        10,
        "member authentication failures within a minute that lock a source out",
    ),
    (
        "--lockout-seconds",
        "SIPFLEET_LOCKOUT_SECONDS",
        float,
        300.0,
        "seconds a locked-out source's requests are dropped",
    ),
    (
        "--trusted-proxies",
        "SIPFLEET_TRUSTED_PROXIES",
        str,
        "",
        "comma-separated IP addresses of edge proxies/SBCs carrying many members: no "
        "per-source rate limit; a failing member behind one is locked out, not the proxy",
    ),
    ("--log-level", "SIPFLEET_LOG_LEVEL", str, "INFO", "logging level (DEBUG, INFO, WARNING)"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipfleet-node",
        description="SIP group server of a sipfleet (role main or node). Every option can "
        "also be given by the environment variable named in its help; the flag wins.",
    )
    for flag, env, typ, default, text in _OPTIONS:
        shown = "required" if default is None else f"default {default}"
        parser.add_argument(
            flag,
            type=typ,
            default=None,
            metavar=flag[2:].replace("-", "_").upper(),
            help=f"{text} [env {env}; {shown}]",
        )
    return parser


def _resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, object]:
    values: dict[str, object] = {}
    for flag, env, typ, default, _text in _OPTIONS:
        key = flag[2:].replace("-", "_")
        value = getattr(args, key)
        if value is None and os.environ.get(env):
            try:
                value = typ(os.environ[env])
            except ValueError:
                parser.error(
                    f"environment variable {env}={os.environ[env]!r} is not a valid "
                    f"{typ.__name__}; fix it or pass {flag}"
                )
        if value is None:
            value = default
        if value is None:
            parser.error(f"{flag} is required: pass {flag} or set {env}")
        values[key] = value
    return values


def _read_token(path: str, parser: argparse.ArgumentParser) -> str:
    file = Path(path)
    try:
        token = file.read_text().strip()
    except FileNotFoundError:
        parser.error(
            f"token file {path} does not exist: create it (e.g. mount the admin-token "
            "Secret there) or point --token-file / SIPFLEET_TOKEN_FILE at the right file"
        )
    except OSError as exc:
        parser.error(f"cannot read token file {path}: {exc.strerror}; check its permissions")
    if not token:
        parser.error(f"token file {path} is empty: write the shared admin token into it")
    return token


def _read_credentials(path: str, parser: argparse.ArgumentParser) -> CredentialStore:
    if not path:
        return CredentialStore()
    try:
        return CredentialStore.load(Path(path))
    except OSError as exc:
        parser.error(f"cannot read credentials file {path}: {exc.strerror}")
    except CredentialsError as exc:
        parser.error(f"credentials file {path}: {exc} (docs/security.md shows the format)")


def parse_config(argv: Sequence[str] | None = None) -> tuple[Config, str]:
    """Parse flags and environment into a Config and the log level; exit 2 on bad input."""
    parser = build_parser()
    values = _resolve(parser.parse_args(argv), parser)
    token = _read_token(str(values.pop("token_file")), parser)
    credentials = _read_credentials(str(values["credentials_file"]), parser)
    log_level = str(values.pop("log_level")).upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        parser.error(f"--log-level {log_level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    try:
        config = Config(token=token, credentials=credentials, **values)  # type: ignore[arg-type]
    except (ConfigError, TypeError) as exc:
        parser.error(str(exc))
    if config.tls is not None:
        try:
            Certificates(config.tls)
        except TlsError as exc:
            parser.error(f"{exc} (docs/transport.md, TLS)")
    return config, log_level


def main(argv: Sequence[str] | None = None) -> None:
    config, log_level = parse_config(argv)
    logging.basicConfig(
        level=log_level,
        stream=sys.stderr,
        format=f"%(asctime)s {config.name} %(levelname)s %(name)s: %(message)s",
    )
    from sipfleet.node.runner import run

    sys.exit(run(config))
