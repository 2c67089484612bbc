"""The operator hands each conference's sender display to its servers: two
SipConferences on one fleet, one without `senderDisplay` (the server's default,
auto: a `name: ` prefix for members that do not accept message/cpim) and one
with `senderDisplay: cpim`, deliver the same group MESSAGE differently; setting
`senderDisplay` on the running first one changes how its members get the next
message (docs/media-and-messages.md)."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

from operator_harness import conference, fleet, served_conferences, wait_for
from sipfleet.devcluster.cluster import Cluster
from sipfleet.node.sip import SipRequest, SipResponse, parse_message

NS = "op-display"
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class Member:
    """A minimal UDP phone: joins by INVITE, sends and receives MESSAGEs."""

    def __init__(self, server: str, user: str) -> None:
        self.server, self.user = server, user
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(5.0)
        self.sock.connect((server, 5060))
        self.here, self.port = self.sock.getsockname()
        self.aor = f"sip:{user}@example.com"

    def send(self, method: str, uri: str, to: str, call_id: str, cseq: int, **kw: str) -> None:
        body = kw.get("body", "")
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.here}:{self.port};rport;branch=z9hG4bK{secrets.token_hex(8)}",
            f"From: <{self.aor}>;tag={self.user}-tag",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{self.user}@{self.here}:{self.port}>",
            "Max-Forwards: 70",
        ]
        if body:
            lines.append(f"Content-Type: {kw['ctype']}")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.sock.send(("\r\n".join(lines) + "\r\n\r\n" + body).encode())

    def receive(self) -> SipRequest | SipResponse:
        return parse_message(self.sock.recv(65535))

    def final(self) -> SipResponse:
        while True:
            message = self.receive()
            if isinstance(message, SipResponse) and message.status >= 200:
                return message

    def join(self, group_user: str) -> None:
        uri = f"sip:{group_user}@{self.server}:5060"
        call_id = secrets.token_hex(8)
        offer = OFFER.format(ip=self.here)
        self.send("INVITE", uri, f"<{uri}>", call_id, 1, body=offer, ctype="application/sdp")
        answer = self.final()
        assert answer.status == 200, answer.status
        assert answer.contact is not None
        to = f"<{uri}>;tag={answer.to_tag}"
        self.send("ACK", answer.contact.uri, to, call_id, 1)

    def post(self, group_user: str, text: str) -> int:
        uri = f"sip:{group_user}@{self.server}:5060"
        self.send(
            "MESSAGE", uri, f"<{uri}>", secrets.token_hex(8), 1, body=text, ctype="text/plain"
        )
        return self.final().status

    def delivered(self) -> SipRequest:
        """The next MESSAGE the server sends us (answered 200)."""
        while True:
            message = self.receive()
            if isinstance(message, SipRequest) and message.method == "MESSAGE":
                via = message.headers.get("Via") or ""
                self.sock.send(
                    (
                        f"SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {message.headers.get('From')}\r\n"
                        f"To: {message.headers.get('To')}\r\nCall-ID: {message.call_id}\r\n"
                        f"CSeq: {message.headers.get('CSeq')}\r\nContent-Length: 0\r\n\r\n"
                    ).encode()
                )
                return message

    def close(self) -> None:
        self.sock.close()


def test_each_conference_shows_senders_its_own_way(cluster: Cluster, tmp_path: Path) -> None:
    with served_conferences(
        cluster,
        NS,
        tmp_path,
        fleet("disp", minNodes=0, maxNodes=1),
        conference("plain", "disp", uri="sip:plain@example.com"),
        conference("wrapped", "disp", uri="sip:wrapped@example.com", senderDisplay="cpim"),
    ) as ip:
        members = {g: (Member(ip, "alice"), Member(ip, "bob")) for g in ("plain", "wrapped")}
        try:

            def shown(group: str) -> tuple[str | None, bytes]:
                alice, bob = members[group]
                assert alice.post(group, "hi") == 200
                got = bob.delivered()
                return got.headers.get("Content-Type"), got.body

            for group, (alice, bob) in members.items():
                alice.join(group)
                bob.join(group)
            assert shown("plain") == ("text/plain", b"alice: hi")
            ctype, body = shown("wrapped")
            assert ctype == "message/cpim" and b"<sip:alice@example.com>" in body, body
            assert body.endswith(b"hi")
            # A change reaches the running conference's shard (the operator re-sends it).
            cluster.kubectl(
                "patch", "sipconference", "plain", "-n", NS, "--type", "merge",
                "-p", '{"spec": {"senderDisplay": "display-name"}}',
            )  # fmt: skip
            wait_for(
                "plain's members to get the sender as a display name",
                lambda: shown("plain") == ("text/plain", b"hi"),
                timeout=30,
                step=1.0,
            )
        finally:
            for alice, bob in members.values():
                alice.close()
                bob.close()
