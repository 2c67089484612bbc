from pathlib import Path

import pytest
from sipfleet.devcluster.kubelet.ipam import (
    AddressesExhausted,
    HostClaims,
    IPAllocator,
    NoClaims,
)


def test_lowest_free_address_from_dot_ten() -> None:
    ipam = IPAllocator()
    assert ipam.allocate("a") == "127.0.0.10"
    assert ipam.allocate("b") == "127.0.0.11"
    assert ipam.allocate("a") == "127.0.0.10"  # same owner, same address


def test_freed_addresses_are_reused_lowest_first() -> None:
    ipam = IPAllocator()
    for owner in "abc":
        ipam.allocate(owner)
    ipam.release("a")
    ipam.release("b")
    assert ipam.allocate("d") == "127.0.0.10"
    assert ipam.allocate("e") == "127.0.0.11"
    assert ipam.in_use() == {"127.0.0.10": "d", "127.0.0.11": "e", "127.0.0.12": "c"}


def test_preferred_address_is_honoured_only_when_free_and_in_range() -> None:
    ipam = IPAllocator()
    assert ipam.allocate("a", preferred="127.0.0.42") == "127.0.0.42"
    assert ipam.allocate("b", preferred="127.0.0.42") == "127.0.0.10"
    assert ipam.allocate("c", preferred="10.0.0.1") == "127.0.0.11"
    assert ipam.allocate("d", preferred="not-an-ip") == "127.0.0.12"


def test_exhaustion_is_an_error() -> None:
    import ipaddress

    ipam = IPAllocator(
        NoClaims(), ipaddress.IPv4Address("127.0.0.10"), ipaddress.IPv4Address("127.0.0.11")
    )
    ipam.allocate("a")
    ipam.allocate("b")
    with pytest.raises(AddressesExhausted):
        ipam.allocate("c")


def test_addresses_claimed_by_another_kubelet_are_skipped(tmp_path: Path) -> None:
    mine, theirs = HostClaims(tmp_path), HostClaims(tmp_path)
    other = IPAllocator(theirs)
    assert other.allocate("x") == "127.0.0.10"
    ipam = IPAllocator(mine)
    assert ipam.allocate("a") == "127.0.0.11"
    other.release("x")
    assert ipam.allocate("b") == "127.0.0.10"
