"""The operator hands each conference's access policy to its servers: a new
SipConference without `access` is authenticated (401 to an unauthenticated
MESSAGE), one that says `open` is not (docs/security.md)."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

from operator_harness import conference, fleet, served_conferences, wait_for
from sipfleet.devcluster.cluster import Cluster

NS = "op-access"


def message(host: str, user: str) -> str:
    """The status line of the answer to one out-of-dialog MESSAGE to sip:user@host:5060."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5.0)
        sock.connect((host, 5060))
        here, port = sock.getsockname()
        uri = f"sip:{user}@{host}:5060"
        request = (
            f"MESSAGE {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {here}:{port};rport;branch=z9hG4bK{secrets.token_hex(8)}\r\n"
            f"From: <sip:probe@example.com>;tag={secrets.token_hex(4)}\r\n"
            f"To: <{uri}>\r\nCall-ID: {secrets.token_hex(8)}\r\nCSeq: 1 MESSAGE\r\n"
            "Max-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        )
        sock.send(request.encode())
        while True:
            line = sock.recv(65535).decode(errors="replace").split("\r\n", 1)[0]
            if not line.startswith("SIP/2.0 1"):
                return line


def test_new_conferences_are_authenticated_and_open_ones_are_not(
    cluster: Cluster, tmp_path: Path
) -> None:
    with served_conferences(
        cluster,
        NS,
        tmp_path,
        fleet("acc", minNodes=0, maxNodes=1),
        conference("closed", "acc", uri="sip:closed@example.com", access={}),
        conference("opened", "acc", uri="sip:opened@example.com"),  # the harness: open
    ) as ip:
        assert message(ip, "closed").startswith("SIP/2.0 401")
        assert message(ip, "opened").startswith("SIP/2.0 403")  # open: past auth, not a member


def test_a_changed_access_policy_reaches_the_running_servers(
    cluster: Cluster, tmp_path: Path
) -> None:
    ns = NS + "-live"
    with served_conferences(
        cluster,
        ns,
        tmp_path,
        fleet("live", minNodes=0, maxNodes=1),
        conference("chat", "live", uri="sip:chat@example.com"),  # the harness: open
    ) as ip:
        assert message(ip, "chat").startswith("SIP/2.0 403")  # open: past auth, not a member
        cluster.kubectl(
            "patch", "sipconference", "chat", "-n", ns, "--type", "merge",
            "-p", '{"spec": {"access": {"policy": "authenticated"}}}',
        )  # fmt: skip
        wait_for(
            "the new policy on the running main server",
            lambda: message(ip, "chat").startswith("SIP/2.0 401") or None,
        )
