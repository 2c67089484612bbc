"""PJSIP (pjsua2 2.15) members over TLS (RFC 3261 26.2, sips:): with digest credentials
they join a protected group and chat; their dialogs survive a certificate rotation on
the server while new connections get the new certificate; a member redirected (302)
to another server follows a `sips:` Contact and stays on TLS. Debian's sipp 3.6.1 is
built without TLS (`sipp -h` offers no `-t l1`), so PJSIP is the TLS peer here.
Certificates are made at test time (tls_certs.TestCa)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from agent import Agent, PhoneFactory
from conference import GROUP, Conference, admin
from node_harness import Fleet, NodeProc, member_credentials
from tls_certs import TestCa, pem_to_der, served_certificate, sip_and_tls_ports

pytestmark = pytest.mark.integration

PASSWORDS = {"alice": "alice-secret-7", "bob": "bob-secret-9"}
MAIN, NODE1 = "127.0.0.73", "127.0.0.74"


def mount_secret(ca: TestCa, name: str, host: str) -> Path:
    """A certificate for `host` behind a `..data` symlink, as the kubelet mounts a Secret."""
    crt, _ = ca.issue(f"{name}-v1", (host,))
    mount = ca.dir / f"{name}-mount"
    mount.mkdir()
    (mount / "..data").symlink_to(crt.parent)
    for file in ("tls.crt", "tls.key"):
        (mount / file).symlink_to(Path("..data") / file)
    return mount


async def tls_server(fleet: Fleet, ca: TestCa, name: str, host: str, *extra: str) -> NodeProc:
    sip, tls = sip_and_tls_ports(host)
    mount = mount_secret(ca, name, host)
    node = await fleet.start(
        name, host, "main" if name == "main" else "node",
        "--sip-port", str(sip), "--tls-port", str(tls),  # the last --sip-port wins
        "--tls-cert-file", str(mount / "tls.crt"), "--tls-key-file", str(mount / "tls.key"),
        "--tls-ca-file", str(ca.cert), *extra,
    )  # fmt: skip
    node.sip_port = sip
    return node


def phone_tls(ca: TestCa, name: str) -> str:
    """ca.crt, tls.crt, tls.key for a phone at 127.0.0.1 (the server connects back to
    its Contact over TLS and checks its certificate)."""
    crt, _ = ca.issue(f"phone-{name}", ("127.0.0.1",))
    shutil.copy(ca.cert, crt.parent / "ca.crt")
    return str(crt.parent)


async def tls_phone(phone: PhoneFactory, ca: TestCa, name: str, password: str = "") -> Agent:
    return await phone(
        "pjsua2",
        name,
        transports=("tls",),
        domain="example.com",
        password=password,
        tls_dir=phone_tls(ca, name),
    )


def sips_uri(server: NodeProc, user: str = "conf1") -> str:
    return f"sips:{user}@{server.host}:{server.sip_port + 1}"


async def test_tls_members_with_credentials_chat_through_a_certificate_rotation(
    fleet: Fleet, phone: PhoneFactory, tmp_path: Path
) -> None:
    ca = TestCa(tmp_path / "ca")
    credentials = member_credentials(tmp_path, PASSWORDS)
    main = await tls_server(fleet, ca, "main", MAIN, "--credentials-file", str(credentials))
    await admin(main, "POST", "/v1/shards", {"group": GROUP, "capacity": 10})
    conf = Conference(main)
    bob = await tls_phone(phone, ca, "bob", PASSWORDS["bob"])
    alice = await tls_phone(phone, ca, "alice", PASSWORDS["alice"])
    await bob.dial(sips_uri(main))
    await alice.dial(sips_uri(main))
    await bob.wait_call("confirmed")
    await alice.wait_call("confirmed")
    await conf.wait_members(2)
    await alice.send_message(sips_uri(main), "hello over tls")
    shown = await bob.wait_for(lambda e: e["event"] == "message", "alice's message")
    assert shown["body"] == "alice: hello over tls", shown
    assert "SIP/2.0/TLS" in bob.log.read_text()  # PJSIP's own trace: the Via of what it got
    metrics = await main.metrics()
    assert metrics["sipfleet_node_tls_connections"] >= 2

    mount = ca.dir / "main-mount"
    v1 = pem_to_der(mount / "tls.crt")
    crt, _ = ca.issue("main-v2", (MAIN,))
    link = mount / "..data_tmp"
    link.symlink_to(crt.parent)
    os.replace(link, mount / "..data")  # the kubelet's Secret update
    v2 = pem_to_der(crt)
    tls_port = main.sip_port + 1
    for _ in range(50):
        if await asyncio.to_thread(served_certificate, MAIN, tls_port, ca) == v2:
            break
        await asyncio.sleep(0.2)
    assert await asyncio.to_thread(served_certificate, MAIN, tls_port, ca) == v2 != v1

    await bob.send_message(sips_uri(main), "after the rotation")
    await alice.wait_message("bob: after the rotation")
    assert await conf.members() == 2
    assert not alice.calls("disconnected") and not bob.calls("disconnected")


async def test_wrong_password_over_tls_never_joins(
    fleet: Fleet, phone: PhoneFactory, tmp_path: Path
) -> None:
    ca = TestCa(tmp_path / "ca")
    credentials = member_credentials(tmp_path, PASSWORDS)
    main = await tls_server(fleet, ca, "main", MAIN, "--credentials-file", str(credentials))
    await admin(main, "POST", "/v1/shards", {"group": GROUP, "capacity": 10})
    mallory = await tls_phone(phone, ca, "alice", "not-her-password")
    await mallory.dial(sips_uri(main))
    ended = await mallory.wait_call("disconnected")
    assert ended.get("status") == 401, ended
    assert await Conference(main).members() == 0


async def test_tls_member_redirected_stays_on_tls(
    fleet: Fleet, phone: PhoneFactory, tmp_path: Path
) -> None:
    ca = TestCa(tmp_path / "ca")
    main = await tls_server(fleet, ca, "main", MAIN)
    node = await tls_server(fleet, ca, "node1", NODE1)
    shards = [
        await admin(s, "POST", "/v1/shards", {"group": GROUP, "capacity": 10}) for s in (main, node)
    ]
    table = {
        GROUP: [
            {"server": s.name, "uri": str(shard["uri"]), "state": "active", "free": 10}
            for s, shard in zip((main, node), shards, strict=True)
        ]
    }
    for server in (main, node):
        await admin(server, "PUT", "/v1/routes", {"generation": 1, "groups": table})
    await admin(main, "POST", "/v1/drain", {})
    carol = await tls_phone(phone, ca, "carol")
    await carol.dial(sips_uri(main))
    redirect = await carol.wait_for(lambda e: e["event"] == "redirect", "the 302")
    assert redirect["target"].startswith("<sips:conf1-node1@"), redirect  # PJSIP drops the port
    await carol.wait_call("confirmed")
    # PJSIP's own trace: it followed the 302 to node1's TLS port over TLS.
    followed = f"INVITE {sips_uri(node, 'conf1-node1')} SIP/2.0\nVia: SIP/2.0/TLS "
    assert followed in carol.log.read_text().replace("\r\n", "\n")
    conf = Conference(main, node)
    await conf.wait_members(1, node)
    assert await conf.members(main) == 0


async def test_baresip_joins_over_tls_and_chats(
    fleet: Fleet, phone: PhoneFactory, tmp_path: Path
) -> None:
    """baresip 1.0 (libre's TLS, the CA given as sip_cafile) dials sip:...;transport=tls
    (it cannot dial sips:), so the server answers with a ;transport=tls Contact rather
    than a sips: one (RFC 3261 12.1.1 asks sips: only for a sips: Request-URI), and
    baresip gets a PJSIP member's message over TLS."""
    ca = TestCa(tmp_path / "ca")
    main = await tls_server(fleet, ca, "main", MAIN)
    await admin(main, "POST", "/v1/shards", {"group": GROUP, "capacity": 10})
    conf = Conference(main)
    # baresip 1.0 turns a dialled sips: URI into sip:sips:...; it takes ;transport=tls.
    tls_uri = f"sip:conf1@{MAIN}:{main.sip_port + 1};transport=tls"
    bob = await phone("baresip", "bob", tls_dir=phone_tls(ca, "bob"))
    alice = await tls_phone(phone, ca, "alice")
    await bob.dial(tls_uri)
    await alice.dial(sips_uri(main))
    await bob.wait_call("confirmed")
    await alice.wait_call("confirmed")
    await conf.wait_members(2)
    await alice.send_message(sips_uri(main), "hello baresip")
    await bob.wait_message("alice: hello baresip")
    # (baresip 1.0's chat drops the contact's ;transport=tls and posts over UDP.)
