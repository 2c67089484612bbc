"""Control-plane ports: distinct, free, outside the ephemeral range, never an excluded one."""

import socket

from sipfleet.devcluster import procs


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = procs.free_ports(5)
    assert len(set(ports)) == 5
    assert all(20000 <= p < 32768 for p in ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))


def test_free_ports_skip_excluded_and_busy_ports() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        excluded = set(range(20000, 32000))
        ports = procs.free_ports(3, exclude=excluded)
    assert taken not in ports
    assert all(32000 <= p < 32768 for p in ports)
