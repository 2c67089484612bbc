"""Loopback addresses for Pods: 127.0.0.10 upward, reusing freed ones.

All of 127.0.0.0/8 routes to the loopback interface on Linux, so a process
can listen on any of these addresses without configuring anything.

Several local clusters may run on one machine (a dev cluster next to the
test suite's). Each address is therefore also claimed host-wide with an
advisory lock on a file named after it (see ``HostClaims``); the kernel
drops the lock when the kubelet exits, however it exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import tempfile
from pathlib import Path
from typing import Protocol

FIRST = ipaddress.IPv4Address("127.0.0.10")
LAST = ipaddress.IPv4Address("127.255.255.254")


class AddressesExhausted(RuntimeError):
    pass


class Claims(Protocol):
    def claim(self, ip: str) -> bool: ...
    def release(self, ip: str) -> None: ...


class NoClaims:
    """For a single cluster (and tests): every address is free host-wide."""

    def claim(self, ip: str) -> bool:
        return True

    def release(self, ip: str) -> None:
        pass


class HostClaims:
    """flock()ed files in a directory shared by every kubelet of this user."""

    def __init__(self, directory: Path | None = None) -> None:
        default = Path(tempfile.gettempdir()) / f"sipfleet-pod-ips-{os.getuid()}"
        self.dir = directory or default
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._held: dict[str, int] = {}

    def claim(self, ip: str) -> bool:
        fd = os.open(self.dir / ip, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._held[ip] = fd
        return True

    def release(self, ip: str) -> None:
        fd = self._held.pop(ip, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class IPAllocator:
    """Hands out the lowest free address; a Pod's previous address if it asks for it."""

    def __init__(
        self,
        claims: Claims | None = None,
        first: ipaddress.IPv4Address = FIRST,
        last: ipaddress.IPv4Address = LAST,
    ) -> None:
        self._claims = claims or NoClaims()
        self._first = int(first)
        self._last = int(last)
        self._used: dict[str, str] = {}  # ip -> owner (pod uid)

    def allocate(self, owner: str, preferred: str | None = None) -> str:
        """The owner's address, else `preferred` if free and in range, else the lowest free one."""
        for ip, who in self._used.items():
            if who == owner:
                return ip
        if preferred is not None and self._usable(preferred) and self._take(preferred, owner):
            return preferred
        for value in range(self._first, self._last + 1):
            ip = str(ipaddress.IPv4Address(value))
            if self._take(ip, owner):
                return ip
        raise AddressesExhausted("no free loopback address for another pod")

    def release(self, owner: str) -> None:
        for ip in [ip for ip, who in self._used.items() if who == owner]:
            del self._used[ip]
            self._claims.release(ip)

    def in_use(self) -> dict[str, str]:
        return dict(self._used)

    def _take(self, ip: str, owner: str) -> bool:
        if ip in self._used or not self._claims.claim(ip):
            return False
        self._used[ip] = owner
        return True

    def _usable(self, ip: str) -> bool:
        try:
            value = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return False
        return self._first <= value <= self._last
