"""JsSIP 3.13, the browser SIP library (run by Node.js, its WebRTC media stood in: see
jssip/member.js), joins a group over `ws` and `wss` (RFC 7118), receives the group's
messages and posts to it. Its SIP, WebSocket framing and SDP offer are its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from node_harness import Fleet, NodeProc, eventually
from test_node_tls import GROUP, udp_sender_message
from test_node_websocket import HOST, NODE1, full_main_and_node, ws_server

JSSIP = Path(__file__).with_name("jssip")
NODE = shutil.which("node")


def jssip_missing() -> str:
    """Why JsSIP cannot run here, or '' when it can."""
    if NODE is None:
        return "node (Node.js) is not installed: scripts/install-system-deps.sh"
    if not (JSSIP / "node_modules" / "jssip").is_dir():
        return f"JsSIP is not installed: npm ci --prefix {JSSIP}"
    return ""


class JsSipMember:
    """One member.js process: JSON commands in, JSON events out."""

    def __init__(self, url: str, aor: str, ca: Path | None, log: Path) -> None:
        self.url, self.aor, self.ca, self.log = url, aor, ca, log
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def start(self) -> None:
        env = dict(os.environ)
        if self.ca is not None:
            env["NODE_EXTRA_CA_CERTS"] = str(self.ca)
        assert NODE is not None
        self.proc = await asyncio.create_subprocess_exec(
            NODE, "--experimental-websocket", str(JSSIP / "member.js"), self.url, self.aor,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=self.log.open("wb"), env=env,
        )  # fmt: skip
        await self.wait("ready")

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())

    async def wait(self, event: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    pytest.fail(f"JsSIP exited: {self.log.read_text()[-2000:]}")
                found = json.loads(line)
                if found["event"] == event and all(found.get(k) == v for k, v in fields.items()):
                    return dict(found)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.send(cmd="quit")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.mark.skipif(bool(jssip_missing()), reason=jssip_missing() or "runs")
@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_jssip_joins_over_websocket_and_chats(
    fleet: Fleet, tmp_path: Path, scheme: str
) -> None:
    node, ws_port, wss_port, ca = await ws_server(fleet, tmp_path)
    port = ws_port if scheme == "ws" else wss_port
    member = JsSipMember(
        f"{scheme}://{HOST}:{port}/",
        "sip:alice@example.com",
        ca.cert if scheme == "wss" else None,
        tmp_path / "jssip.log",
    )
    await member.start()
    try:
        member.send(cmd="dial", uri=f"sip:conf1@{HOST}")
        await member.wait("call", state="confirmed")
        await eventually(lambda: _members(node, 1), what="JsSIP joined")

        await udp_sender_message(node, "hello browser")  # carol, over UDP
        got = await member.wait("message")
        assert "hello browser" in got["body"], got

        member.send(cmd="message", uri=f"sip:conf1@{HOST}", text="hi from the browser")
        sent = await member.wait("sent")
        assert sent["ok"], sent
        assert (await node.metrics())["sipfleet_node_messages_in_total"] == 2

        member.send(cmd="hangup")
        await member.wait("call", state="disconnected")
        await eventually(lambda: _members(node, 0), what="JsSIP left")
    finally:
        await member.stop()


@pytest.mark.skipif(bool(jssip_missing()), reason=jssip_missing() or "runs")
async def test_jssip_redirected_redials_at_the_ws_uri_of_a_node(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Main is full (alice, JsSIP): JsSIP's INVITE for bob gets a 302 whose Contact is
    node1's ws URI. JsSIP does not follow a 302 (the call fails, cause Redirected) and a
    JsSIP UA has one WebSocket URL, so bob's application starts a UA at the Contact's
    host and port and dials it, as a browser page would; bob then gets alice's post."""
    main, node1, ws_port, _ = await full_main_and_node(fleet, tmp_path)
    members = []
    try:
        alice = JsSipMember(
            f"ws://{HOST}:{ws_port}/", "sip:alice@example.com", None, tmp_path / "alice.log"
        )
        members.append(alice)
        await alice.start()
        alice.send(cmd="dial", uri=f"sip:conf1@{HOST}")
        await alice.wait("call", state="confirmed")
        await eventually(lambda: _members(main, 1), what="alice filled main")

        bob_main = JsSipMember(
            f"ws://{HOST}:{ws_port}/", "sip:bob@example.com", None, tmp_path / "bob-main.log"
        )
        members.append(bob_main)
        await bob_main.start()
        bob_main.send(cmd="dial", uri=f"sip:conf1@{HOST}")
        failed = await bob_main.wait("call", state="disconnected")
        assert failed["status"] == 302 and failed["cause"] == "Redirected", failed
        node_uri = f"sip:conf1-node1@{NODE1}:{ws_port};transport=ws"
        assert failed["contact"] == f"<{node_uri}>", failed

        bob = JsSipMember(
            f"ws://{NODE1}:{ws_port}/", "sip:bob@example.com", None, tmp_path / "bob.log"
        )
        members.append(bob)
        await bob.start()
        bob.send(cmd="dial", uri=node_uri)
        await bob.wait("call", state="confirmed")
        await eventually(lambda: _members(node1, 1), what="bob joined node1")

        alice.send(cmd="message", uri=f"sip:conf1@{HOST}", text="hi bob")
        assert (await alice.wait("sent"))["ok"]
        got = await bob.wait("message")
        assert "hi bob" in got["body"], got
    finally:
        for member in members:
            await member.stop()


async def _members(node: NodeProc, count: int) -> bool:
    return await node.members(GROUP) == count
