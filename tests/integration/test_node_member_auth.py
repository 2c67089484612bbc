"""Member digest authentication against a real sipfleet-node: PJSIP and sipp members with
credentials, and the RFC's answer to a wrong password, a replayed or expired nonce, a
spoofed From, a non-member SUBSCRIBE and a missing group; sipvicious svwar and svcrack
find nothing.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from node_harness import Fleet, NodeProc, SippFactory, free_port, member_credentials
from sipfleet.node.admin_types import Access
from sipfleet.node.auth.digest import SHA256, Credentials, expected_response, ha1
from sipfleet.node.sip import SipResponse, parse_message

pytestmark = pytest.mark.integration

GROUP = "sip:conf1@example.com"
REALM = "example.com"
PASSWORDS = {"alice": "alice-secret-7", "bob": "bob-secret-9"}


def credentials_file(tmp: Path) -> Path:
    return member_credentials(tmp, PASSWORDS, REALM)


async def protected_node(fleet: Fleet, tmp: Path, host: str, *extra: str) -> NodeProc:
    node = await fleet.start(
        "main", host, "main", "--credentials-file", str(credentials_file(tmp)), *extra
    )
    async with node.client() as client:
        await client.ensure_shard(GROUP, 50)
    return node


async def auth_failures(node: NodeProc) -> dict[str, float]:
    prefix = 'sipfleet_node_auth_failures_total{reason="'
    return {
        k[len(prefix) : -2]: v for k, v in (await node.metrics()).items() if k.startswith(prefix)
    }


# --- a raw UDP client, to say exactly what a hostile or replaying peer says -------------------


@dataclass
class Raw:
    """One UDP socket on 127.0.0.1 sending hand-made requests to a node."""

    node: NodeProc
    source: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.source, 0))
        self.sock.settimeout(3.0)
        self.port = self.sock.getsockname()[1]

    def request(
        self,
        method: str,
        user: str = "conf1",
        sender: str = "sip:alice@example.com",
        authorization: str | None = None,
        headers: tuple[str, ...] = (),
    ) -> tuple[str, bytes]:
        uri = f"sip:{user}@{self.node.target}"
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.source}:{self.port};branch=z9hG4bK{secrets.token_hex(8)}",
            f"From: <{sender}>;tag={secrets.token_hex(4)}",
            f"To: <{uri}>",
            f"Call-ID: {secrets.token_hex(8)}",
            f"CSeq: 1 {method}",
            "Max-Forwards: 70",
            f"Contact: <sip:x@{self.source}:{self.port}>",
            *headers,
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        body = b"hello" if method == "MESSAGE" else b""
        if body:
            lines.append("Content-Type: text/plain")
        lines.append(f"Content-Length: {len(body)}")
        return uri, ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def send(self, data: bytes) -> SipResponse | None:
        """Send and wait for the first final response (None: nothing within 3 s)."""

        call_id = data.split(b"Call-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()

        def exchange() -> SipResponse | None:
            self.sock.sendto(data, (self.node.host, self.node.sip_port))
            while True:  # skip retransmitted answers to earlier (unACKed) INVITEs
                try:
                    raw, _ = self.sock.recvfrom(65535)
                except TimeoutError:
                    return None
                message = parse_message(raw)
                if (
                    isinstance(message, SipResponse)
                    and message.status >= 200
                    and message.call_id == call_id
                ):
                    return message

        return await asyncio.to_thread(exchange)

    async def challenge(self, method: str, user: str = "conf1") -> tuple[SipResponse, str]:
        response = await self.send(self.request(method, user)[1])
        assert response is not None and response.status == 401, response
        field = response.headers.get_all("WWW-Authenticate")[0]
        return response, field.split('nonce="')[1].split('"')[0]

    def close(self) -> None:
        self.sock.close()


def answer(
    nonce: str,
    uri: str,
    method: str,
    user: str = "alice",
    password: str | None = None,
    nc: int = 1,
) -> str:
    """The Authorization a client computes for qop=auth, SHA-256 (RFC 7616 3.4)."""
    secret = PASSWORDS[user] if password is None else password
    creds = Credentials(user, REALM, nonce, uri, "", SHA256, "abcd", nc, f"{nc:08x}", None)
    digest = expected_response(ha1(SHA256, user, REALM, secret), method, creds)
    return (
        f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{digest}", algorithm=SHA-256, cnonce="abcd", qop=auth, nc={nc:08x}'
    )


@pytest.fixture
async def raw_node(fleet: Fleet, tmp_path: Path):  # type: ignore[no-untyped-def]
    node = await protected_node(fleet, tmp_path, "127.0.0.61", "--nonce-seconds", "2")
    raw = Raw(node)
    yield raw
    raw.close()


# --- the RFC's answers, message by message ------------------------------------------------------


async def test_missing_and_protected_groups_get_the_same_challenge(raw_node: Raw) -> None:
    protected, _ = await raw_node.challenge("INVITE", "conf1")
    missing, nonce = await raw_node.challenge("INVITE", "nosuchgroup")

    def shape(response: SipResponse) -> list[str]:
        return [v.split("nonce=")[0] for v in response.headers.get_all("WWW-Authenticate")]

    assert (protected.status, protected.reason) == (missing.status, missing.reason)
    assert shape(protected) == shape(missing)
    # Only a member who authenticated learns that the group does not exist.
    uri, data = raw_node.request("INVITE", "nosuchgroup")
    _, data = raw_node.request("INVITE", "nosuchgroup", authorization=answer(nonce, uri, "INVITE"))
    response = await raw_node.send(data)
    assert response is not None and response.status == 404


async def test_replayed_nonce_count_is_challenged_again(raw_node: Raw) -> None:
    _, nonce = await raw_node.challenge("MESSAGE")
    uri = f"sip:conf1@{raw_node.node.target}"
    field = answer(nonce, uri, "MESSAGE")
    # alice is authenticated but not a member yet: 403 Not A Member, past authentication.
    first = await raw_node.send(raw_node.request("MESSAGE", authorization=field)[1])
    assert first is not None and first.status == 403
    replay = await raw_node.send(raw_node.request("MESSAGE", authorization=field)[1])
    assert replay is not None and replay.status == 401
    assert "stale" not in replay.headers.get_all("WWW-Authenticate")[0]
    assert (await auth_failures(raw_node.node)).get("replayed") == 1


async def test_expired_nonce_gets_stale_true(raw_node: Raw) -> None:
    _, nonce = await raw_node.challenge("MESSAGE")
    await asyncio.sleep(2.5)  # the node runs with --nonce-seconds 2
    uri = f"sip:conf1@{raw_node.node.target}"
    response = await raw_node.send(
        raw_node.request("MESSAGE", authorization=answer(nonce, uri, "MESSAGE"))[1]
    )
    assert response is not None and response.status == 401
    assert response.headers.get_all("WWW-Authenticate")[0].endswith("stale=true")
    assert (await auth_failures(raw_node.node)).get("stale_nonce") == 1


async def test_spoofed_from_is_forbidden(raw_node: Raw) -> None:
    _, nonce = await raw_node.challenge("MESSAGE")
    uri = f"sip:conf1@{raw_node.node.target}"
    _, data = raw_node.request(
        "MESSAGE", sender="sip:bob@example.com", authorization=answer(nonce, uri, "MESSAGE")
    )
    response = await raw_node.send(data)
    assert response is not None and response.status == 403
    assert (await auth_failures(raw_node.node)).get("from_mismatch") == 1
    assert (await raw_node.node.metrics())["sipfleet_node_messages_in_total"] == 0


async def test_non_member_subscribe_to_the_roster_is_forbidden(raw_node: Raw) -> None:
    _, nonce = await raw_node.challenge("SUBSCRIBE")
    uri = f"sip:conf1@{raw_node.node.target}"
    _, data = raw_node.request(
        "SUBSCRIBE",
        authorization=answer(nonce, uri, "SUBSCRIBE"),
        headers=("Event: conference", "Expires: 60", "Accept: application/conference-info+xml"),
    )
    response = await raw_node.send(data)
    assert response is not None and response.status == 403 and not response.body
    assert (await auth_failures(raw_node.node)).get("not_member") == 1


async def test_unauthenticated_roster_subscribe_is_challenged(raw_node: Raw) -> None:
    _, data = raw_node.request("SUBSCRIBE", headers=("Event: conference", "Expires: 60"))
    response = await raw_node.send(data)
    assert response is not None and response.status == 401 and not response.body


# --- sipvicious: what issue 12's reporter ran -----------------------------------------------------

SVWAR = Path(sys.executable).parent / "sipvicious_svwar"
SVCRACK = Path(sys.executable).parent / "sipvicious_svcrack"
NUMBERED = "sip:4242@example.com"


def sipvicious(tool: Path, *args: str, timeout: float = 90.0) -> str:
    """Run a sipvicious tool from 127.0.0.1 (a free local port), bounded in time."""
    if not tool.exists():
        pytest.skip(f"{tool.name} is not installed (pip install sipvicious)")
    port = free_port("127.0.0.1")
    done = subprocess.run(
        [str(tool), "-b", "127.0.0.1", "-P", str(port), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return done.stdout + done.stderr


async def numbered_group(fleet: Fleet, tmp: Path, host: str, *extra: str) -> NodeProc:
    node = await fleet.start("main", host, "main", *extra)
    async with node.client() as client:
        await client.ensure_shard(NUMBERED, 10)
    return node


def svwar(node: NodeProc, method: str) -> str:
    return sipvicious(
        SVWAR, "--force", "-m", method, "-e", "4200-4299", "-p", str(node.sip_port),
        "--domain", "example.com", node.host,
    )  # fmt: skip


async def test_svwar_enumerates_an_open_server(fleet: Fleet, tmp_path: Path) -> None:
    # The reproduction from issue 12, so the next test is known to be able to fail.
    node = await numbered_group(fleet, tmp_path, "127.0.0.64")
    assert "| 4242" in await asyncio.to_thread(svwar, node, "INVITE")


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS", "REGISTER"])
async def test_svwar_finds_nothing_on_a_protected_server(
    fleet: Fleet, tmp_path: Path, method: str
) -> None:
    node = await numbered_group(
        fleet, tmp_path, "127.0.0.65", "--credentials-file", str(credentials_file(tmp_path))
    )
    out = await asyncio.to_thread(svwar, node, method)
    assert "4242" not in out and "found nothing" in out, out


# --- sipp: MD5 digest for a group that allows only MD5 (sipp 3.6 computes nothing else) ----------

MD5_ONLY = Access(policy="authenticated", algorithms=("MD5",))


async def test_sipp_members_join_and_post_with_md5_digest(
    fleet: Fleet, tmp_path: Path, sipp: SippFactory
) -> None:
    node = await fleet.start(
        "main", "127.0.0.66", "main", "--credentials-file", str(credentials_file(tmp_path))
    )
    async with node.client() as client:
        await client.ensure_shard(GROUP, 50, MD5_ONLY)
    auth_uri = ("-auth_uri", f"conf1@{node.target}")  # else sipp's uri is remote_ip:port
    peer = sipp(
        "auth_member.xml", node.target, "conf1", "alice",
        extra=("-au", "alice", "-ap", PASSWORDS["alice"], *auth_uri),
    )  # fmt: skip
    assert await peer.wait() == 0, peer.report()
    metrics = await node.metrics()
    assert metrics["sipfleet_node_messages_in_total"] == 1
    assert await auth_failures(node) == {}
    wrong = sipp(
        "auth_member.xml", node.target, "conf1", "bob",
        extra=("-au", "bob", "-ap", "no", *auth_uri), timeout=5,
    )  # fmt: skip
    assert await wrong.wait() != 0  # its second INVITE gets another 401, not the 200 it expects
    assert (await auth_failures(node)).get("bad_response", 0) >= 1
    assert await node.members(GROUP) == 0


# --- svcrack and the lockout ---------------------------------------------------------------------


def svcrack(node: NodeProc, dictionary: Path) -> str:
    return sipvicious(
        SVCRACK, "-u", "alice", "-d", str(dictionary), "-m", "INVITE",
        "--requesturi", f"sip:conf1@{node.target}", "--domain", "example.com",
        "-p", str(node.sip_port), "--maximumtime", "5", node.host,
    )  # fmt: skip


async def test_svcrack_cracks_nothing(fleet: Fleet, tmp_path: Path) -> None:
    # svcrack 0.3.8 computes MD5 only and takes the first challenge, so the group allows
    # MD5 alone; the right password is the 31st guess. svcrack's digest uri is
    # sip:<domain>, not the Request-URI it sends: 400 (RFC 7616 3.4.6), which svcrack
    # does not expect and stops; a failure that counts towards the lockout.
    node = await fleet.start(
        "main", "127.0.0.67", "main", "--credentials-file", str(credentials_file(tmp_path))
    )
    async with node.client() as client:
        await client.ensure_shard(GROUP, 50, MD5_ONLY)
    dictionary = tmp_path / "guesses.txt"
    dictionary.write_text("".join(f"guess{i}\n" for i in range(30)) + PASSWORDS["alice"] + "\n")
    out = await asyncio.to_thread(svcrack, node, dictionary)
    assert PASSWORDS["alice"] not in out and "found nothing" in out, out
    assert (await auth_failures(node)).get("uri_mismatch", 0) >= 1  # its guesses arrived
    assert await node.members(GROUP) == 0


async def test_guessing_source_is_locked_out_even_with_the_right_password(
    raw_node: Raw,
) -> None:
    uri = f"sip:conf1@{raw_node.node.target}"
    for i in range(10):  # --lockout-failures defaults to 10 a minute
        _, nonce = await raw_node.challenge("INVITE")
        _, data = raw_node.request(
            "INVITE", authorization=answer(nonce, uri, "INVITE", password=f"g{i}")
        )
        response = await raw_node.send(data)
        assert response is not None and response.status == 401
    assert await raw_node.send(raw_node.request("INVITE")[1]) is None  # dropped, no answer
    other = Raw(raw_node.node, "127.0.0.2")  # another source is still served
    try:
        _, nonce = await other.challenge("INVITE")
    finally:
        other.close()
    failed = await auth_failures(raw_node.node)
    assert failed.get("bad_response") == 10 and failed.get("locked_out", 0) >= 1, failed


async def test_a_changed_credentials_file_is_used_without_a_restart(
    fleet: Fleet, tmp_path: Path
) -> None:
    path = member_credentials(tmp_path, {"alice": PASSWORDS["alice"]}, REALM)
    node = await fleet.start(
        "main", "127.0.0.69", "main", "--credentials-file", str(path),
        "--lockout-failures", "1000",  # bob's tries before the reload are failures
    )  # fmt: skip
    async with node.client() as client:
        await client.ensure_shard(GROUP, 50)
    raw = Raw(node)
    uri = f"sip:conf1@{node.target}"
    try:

        async def bob_posts() -> int:
            _, nonce = await raw.challenge("MESSAGE")
            auth = answer(nonce, uri, "MESSAGE", user="bob")
            response = await raw.send(
                raw.request("MESSAGE", "conf1", "sip:bob@example.com", auth)[1]
            )
            assert response is not None
            return response.status

        assert await bob_posts() == 401  # unknown user
        member_credentials(tmp_path, PASSWORDS, REALM)  # the Secret gains bob
        for _ in range(40):  # the file is polled every 2 s
            status = await bob_posts()
            if status != 401:
                break
            await asyncio.sleep(0.5)
        assert status == 403  # authenticated now; not a member yet (Not A Member)
    finally:
        raw.close()
