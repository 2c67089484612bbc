"""Loopback addresses for Pods: 127.0.0.10 upward, reusing freed ones.

All of 127.0.0.0/8 routes to the loopback interface on Linux, so a process
can listen on any of these addresses without configuring anything.
"""

from __future__ import annotations

import ipaddress

FIRST = ipaddress.IPv4Address("127.0.0.10")
LAST = ipaddress.IPv4Address("127.255.255.254")


class AddressesExhausted(RuntimeError):
    pass


class IPAllocator:
    """Hands out the lowest free address; a Pod's previous address if it asks for it."""

    def __init__(self, first: ipaddress.IPv4Address = FIRST, last: ipaddress.IPv4Address = LAST):
        self._first = int(first)
        self._last = int(last)
        self._used: dict[str, str] = {}  # ip -> owner (pod uid)

    def allocate(self, owner: str, preferred: str | None = None) -> str:
        """The owner's address, else `preferred` if free and in range, else the lowest free one."""
        for ip, who in self._used.items():
            if who == owner:
                return ip
        if preferred is not None and self._usable(preferred) and preferred not in self._used:
            self._used[preferred] = owner
            return preferred
        for value in range(self._first, self._last + 1):
            ip = str(ipaddress.IPv4Address(value))
            if ip not in self._used:
                self._used[ip] = owner
                return ip
        raise AddressesExhausted("no free loopback address for another pod")

    def release(self, owner: str) -> None:
        for ip in [ip for ip, who in self._used.items() if who == owner]:
            del self._used[ip]

    def in_use(self) -> dict[str, str]:
        return dict(self._used)

    def _usable(self, ip: str) -> bool:
        try:
            value = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return False
        return self._first <= value <= self._last
