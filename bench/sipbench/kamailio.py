"""The Kamailio peers: the stateless-200 server and the imc room, from bench/kamailio/*.cfg."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sipbench import sipmsg
from sipbench.fanout import MemberReceiver
from sipbench.probe import UdpPeer, wait_sip_ready
from sipbench.procs import BenchError, Procs

CFG_DIR = Path(__file__).resolve().parent.parent / "kamailio"
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
KAMAILIO = "/usr/sbin/kamailio"


@dataclass(frozen=True)
class ImcRoom:
    """One imc room preloaded with members; `sender` is a member too (imc requires it)."""

    name: str
    host: str
    sender: str
    members: list[str]

    @property
    def uri(self) -> str:
        return f"sip:{self.name}@{self.host}"


def _render(template: str, out: Path, values: dict[str, str]) -> Path:
    text = (CFG_DIR / template).read_text()
    for key, value in values.items():
        text = text.replace(f"__{key}__", value)
    left = re.search(r"__[A-Z][A-Z_]*__", text)
    if left:
        raise BenchError(f"{template}: placeholder {left.group()} was left unfilled in {out}")
    out.write_text(text)
    return out


def _escape(value: str) -> str:
    """db_text escapes its column separator and backslash."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _write_imc_tables(db_dir: Path, room: ImcRoom) -> None:
    db_dir.mkdir(parents=True, exist_ok=True)
    (db_dir / "version").write_text(
        "table_name(str) table_version(int)\nimc_rooms:1\nimc_members:1\n"
    )
    (db_dir / "imc_rooms").write_text(
        "id(int,auto) name(string) domain(string) flag(int)\n"
        f"1:{_escape(room.name)}:{_escape(room.host)}:0\n"
    )
    rows = ["id(int,auto) username(string) domain(string) room(string) flag(int)"]
    # The sender is the owner (flag 1); the others are plain members (flag 0).
    for i, user in enumerate([room.sender, *room.members], start=1):
        flag = 1 if user == room.sender else 0
        rows.append(f"{i}:{_escape(user)}:{_escape(room.host)}:{_escape(room.uri)}:{flag}")
    (db_dir / "imc_members").write_text("\n".join(rows) + "\n")


def _check_installed() -> None:
    if not Path(KAMAILIO).exists() or not MODULES.is_dir():
        raise BenchError(
            f"Kamailio is not installed ({KAMAILIO}, {MODULES}): apt-get install kamailio"
        )
    if shutil.which("sipp") is None:
        raise BenchError("sipp is not installed: apt-get install sip-tester")


def _start(procs: Procs, name: str, cfg: Path, host: str, port: int) -> subprocess.Popen[bytes]:
    run_dir = procs.workdir / f"{name}-run"
    run_dir.mkdir(exist_ok=True)
    argv = [
        KAMAILIO,
        "-f",
        str(cfg),
        "-L",
        str(MODULES),
        "-DD",
        "-E",
        "-P",
        str(run_dir / "kamailio.pid"),
        "-Y",
        str(run_dir),
        "-m",
        "256",
        "-M",
        "16",
    ]
    proc = procs.start(name, argv)
    try:
        wait_sip_ready(host, port, 10.0, f"Kamailio ({name})")
    except BenchError as exc:
        raise BenchError(f"{exc}\n--- {name}.log ---\n{procs.log_tail(name)}") from None
    return proc


def start_stateless(procs: Procs, host: str, port: int, children: int) -> subprocess.Popen[bytes]:
    """Kamailio answering every MESSAGE with sl_send_reply 200."""
    _check_installed()
    cfg = _render(
        "stateless-200.cfg",
        procs.workdir / "kamailio-stateless.cfg",
        {"HOST": host, "PORT": str(port), "CHILDREN": str(children)},
    )
    return _start(procs, "kamailio-stateless", cfg, host, port)


def start_imc(
    procs: Procs, host: str, port: int, children: int, room: ImcRoom, members_port: int
) -> subprocess.Popen[bytes]:
    """Kamailio imc hosting `room`, sending member copies to members_port."""
    _check_installed()
    db_dir = procs.workdir / "imc-db"
    _write_imc_tables(db_dir, room)
    cfg = _render(
        "imc.cfg",
        procs.workdir / "kamailio-imc.cfg",
        {
            "HOST": host,
            "PORT": str(port),
            "CHILDREN": str(children),
            "DB_DIR": str(db_dir),
            "MEMBERS_PORT": str(members_port),
        },
    )
    return _start(procs, "kamailio-imc", cfg, host, port)


def imc_join(receiver: MemberReceiver, host: str, port: int, room: ImcRoom, user: str) -> int:
    """`user` joins `room` with the `#join` command; returns how many members imc
    told about it ("*** user has joined the room"), as the receiver counted them."""
    peer = UdpPeer(host)
    try:
        receiver.call({"cmd": "arm"}, 5.0)
        # Everyone already in the room hears of the join: the preloaded members and the sender.
        receiver.send({"cmd": "wait", "count": len(room.members) + 1, "timeout": 10.0})
        req = sipmsg.request(
            "MESSAGE", f"sip:{room.name}@{host}:{port}", local=peer.local,
            from_uri=f"sip:{user}@{host}", to_uri=room.uri, call_id=f"join-{user}-{port}",
            body=b"#join",
        )  # fmt: skip
        reply = peer.transact(req, (host, port), 5.0)
        got = receiver.read(15.0)
    finally:
        peer.close()
    code = sipmsg.status_code(reply) if reply else None
    if code != 200:
        raise BenchError(f"imc #join by {user} answered {code} (None = no answer)")
    return int(got["count"])
