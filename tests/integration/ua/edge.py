"""Kamailio as a Record-Routing edge proxy, from examples/kamailio/sipfleet-edge.cfg.

The tests run the example users are told to deploy, with its addresses set by -A.
The config logs one `EDGE ...` line per relayed request; `routed` reads them.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from node_harness import free_port

CONFIG = Path(__file__).resolve().parents[3] / "examples" / "kamailio" / "sipfleet-edge.cfg"
KAMAILIO = Path("/usr/sbin/kamailio")
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
HOST = "127.0.0.1"
LINE = re.compile(r"EDGE (?P<what>in-dialog|initial) (?P<method>[A-Z]+) (?P<rest>.*)")


@dataclass
class Kamailio:
    """One Kamailio process relaying to the sip-node at server_host:server_port."""

    tmp: Path
    server_host: str
    server_port: int
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    @property
    def uri_host(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        if not KAMAILIO.exists():
            pytest.skip("kamailio not installed: apt-get install kamailio")
        self.port = free_port(HOST)
        self.log = self.tmp / "kamailio.log"
        run = self.tmp / "kamailio-run"
        run.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [
                str(KAMAILIO), "-f", str(CONFIG), "-L", str(MODULES), "-DD", "-E",
                "-P", str(run / "pid"), "-Y", str(run), "-m", "64", "-M", "8",
                "-A", f"EDGE_UDP=udp:{HOST}:{self.port}",
                "-A", f"EDGE_TCP=tcp:{HOST}:{self.port}",
                "-A", f'SIPFLEET_URI="sip:{self.server_host}:{self.server_port}"',
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"kamailio exited: {self.log.read_text()[-3000:]}")
            with socket.socket() as probe:
                if probe.connect_ex((HOST, self.port)) == 0:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"kamailio not listening after 10 s: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def routed(self, what: str = "in-dialog") -> list[dict[str, str]]:
        """The requests the edge relayed: initial ones, or in-dialog ones that carried
        its Route header (loose_route matched)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            found = LINE.search(line)
            if found and found["what"] == what:
                out.append(found.groupdict())
        return out

    def unrouted(self) -> list[str]:
        """In-dialog requests that arrived here without this proxy's Route header."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if "without our Route" in line]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
