"""Via handling at a server: received/rport stamping and response routing
(RFC 3261 18.2.1 and 18.2.2, RFC 3581 section 4), and transport errors (17.1.4)."""

from __future__ import annotations

import pytest
from sipfleet.node.sip import (
    Headers,
    RequestReceived,
    ResponseReceived,
    SipRequest,
    TransactionLayer,
    TransactionTimedOut,
    Transmit,
    TransportFailed,
    Via,
    make_response,
    parse_message,
)
from sipfleet.node.sip.via import (
    ResponseRoute,
    default_port,
    is_reliable,
    response_route,
    stamp_via,
    with_via_transport,
)


@pytest.mark.parametrize(
    ("via", "source", "stamped"),
    [
        # 18.2.1: sent-by equals the source: nothing to add.
        ("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1", ("127.0.0.1", 40000), None),
        # 18.2.1: sent-by differs (a host name, or another address): received.
        (
            "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1",
            ("192.0.2.4", 5060),
            "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1;received=192.0.2.4",
        ),
        # RFC 3581 4: an empty rport gets the source port, and received is
        # added even when the host matches.
        (
            "SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bK1",
            ("127.0.0.1", 40000),
            "SIP/2.0/UDP 127.0.0.1:5070;rport=40000;branch=z9hG4bK1;received=127.0.0.1",
        ),
        # An rport with a value already is left as it is.
        ("SIP/2.0/UDP 127.0.0.1:5070;rport=5070;branch=z9hG4bK1", ("127.0.0.1", 5070), None),
        # IPv6: [::1] and ::1 are one address; received is written unbracketed (25.1).
        ("SIP/2.0/UDP [::1]:5070;branch=z9hG4bK1", ("::1", 5070), None),
        ("SIP/2.0/UDP [0:0::1]:5070;branch=z9hG4bK1", ("::1", 5070), None),
        (
            "SIP/2.0/UDP [2001:db8::9:1]:5070;rport;branch=z9hG4bK1",
            ("2001:db8::9:2", 6000),
            "SIP/2.0/UDP [2001:db8::9:1]:5070;rport=6000;branch=z9hG4bK1;received=2001:db8::9:2",
        ),
    ],
)
def test_stamp_via(via: str, source: tuple[str, int], stamped: str | None) -> None:
    parsed = Via.parse(via)
    out = stamp_via(parsed, source)
    if stamped is None:
        assert out is parsed
    else:
        assert str(out) == stamped


@pytest.mark.parametrize(
    ("via", "source", "transport", "route"),
    [
        # The input: no rport, sent from port S=40000 with sent-by port
        # L=5070: the response goes to L (18.2.2), not to S.
        (
            "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1",
            ("127.0.0.1", 40000),
            "UDP",
            ResponseRoute("UDP", ("127.0.0.1", 5070)),
        ),
        # No port in sent-by: 5060.
        (
            "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1",
            ("127.0.0.1", 40000),
            "UDP",
            ResponseRoute("UDP", ("127.0.0.1", 5060)),
        ),
        # received: that address, at the sent-by port.
        (
            "SIP/2.0/UDP host.example;branch=z9hG4bK1",
            ("192.0.2.7", 40000),
            "UDP",
            ResponseRoute("UDP", ("192.0.2.7", 5060)),
        ),
        # rport (RFC 3581): back to the source address and port.
        (
            "SIP/2.0/UDP 10.0.0.1:5070;rport;branch=z9hG4bK1",
            ("192.0.2.7", 40000),
            "UDP",
            ResponseRoute("UDP", ("192.0.2.7", 40000)),
        ),
        # maddr: that address at the sent-by port.
        (
            "SIP/2.0/UDP 127.0.0.1:5070;maddr=127.0.0.9;branch=z9hG4bK1",
            ("127.0.0.1", 40000),
            "UDP",
            ResponseRoute("UDP", ("127.0.0.9", 5070)),
        ),
        (
            "SIP/2.0/UDP 127.0.0.1;maddr=[::1];branch=z9hG4bK1",
            ("127.0.0.1", 40000),
            "UDP",
            ResponseRoute("UDP", ("::1", 5060)),
        ),
        # Reliable transports: the connection the request came on, else a new
        # one to received at the sent-by port (5061 for TLS); maddr and rport
        # do not apply.
        (
            "SIP/2.0/TCP 127.0.0.1:5070;rport;maddr=127.0.0.9;branch=z9hG4bK1",
            ("127.0.0.1", 40000),
            "TCP",
            ResponseRoute("TCP", ("127.0.0.1", 40000), ("127.0.0.1", 5070)),
        ),
        (
            "SIP/2.0/TLS client.example;branch=z9hG4bK1",
            ("192.0.2.7", 40000),
            "tls",
            ResponseRoute("TLS", ("192.0.2.7", 40000), ("192.0.2.7", 5061)),
        ),
        # IPv6: socket-form addresses without brackets.
        (
            "SIP/2.0/UDP [::1]:5070;branch=z9hG4bK1",
            ("::1", 40000),
            "UDP",
            ResponseRoute("UDP", ("::1", 5070)),
        ),
        (
            "SIP/2.0/UDP [::1]:5070;rport;branch=z9hG4bK1",
            ("::1", 40000),
            "UDP",
            ResponseRoute("UDP", ("::1", 40000)),
        ),
    ],
)
def test_response_route(
    via: str, source: tuple[str, int], transport: str, route: ResponseRoute
) -> None:
    stamped = stamp_via(Via.parse(via), source)
    assert response_route(stamped, source, transport) == route


def test_transport_helpers() -> None:
    assert is_reliable("tcp") and is_reliable("TLS") and not is_reliable("UDP")
    assert (default_port("UDP"), default_port("TCP"), default_port("tls")) == (5060, 5060, 5061)
    wire = (
        b"MESSAGE sip:a@h SIP/2.0\r\nv: SIP/2.0/TCP h:5060;branch=z9hG4bKx\r\n"
        b"Via: SIP/2.0/TCP p\r\n"
    )
    assert with_via_transport(wire, "udp") == wire.replace(b"TCP h", b"UDP h")
    assert with_via_transport(b"MESSAGE sip:a@h SIP/2.0\r\n\r\n", "UDP").endswith(b"\r\n\r\n")


# -- the transaction layer routes responses by the Via -------------------------------


def _request(method: str, via: str, branch: str = "z9hG4bKv1") -> SipRequest:
    return SipRequest(
        method,
        "sip:conf@127.0.0.1",
        Headers(
            [
                ("Via", f"{via};branch={branch}"),
                ("From", "<sip:a@127.0.0.2>;tag=ft"),
                ("To", "<sip:conf@127.0.0.1>"),
                ("Call-ID", "call-v"),
                ("CSeq", f"1 {method}"),
                ("Max-Forwards", "70"),
            ]
        ),
    )


def test_server_answers_to_the_sent_by_port_without_rport() -> None:
    layer = TransactionLayer()
    msg = parse_message(_request("MESSAGE", "SIP/2.0/UDP 127.0.0.1:5070").to_bytes())
    (got,) = layer.receive(msg, ("127.0.0.1", 40000), "UDP", 0.0)
    assert isinstance(got, RequestReceived) and got.source == ("127.0.0.1", 40000)
    (out,) = layer.respond(got.tx_id, make_response(got.request, 200), 0.0)
    assert isinstance(out, Transmit) and out.destination == ("127.0.0.1", 5070)
    assert out.tx_id == got.tx_id


# -- transport errors (17.1.4, 17.2.4, 18.1.1, 18.2.2) --------------------------------


def test_client_transport_error_ends_the_transaction() -> None:
    layer = TransactionLayer()
    msg = _request("MESSAGE", "SIP/2.0/UDP 127.0.0.1:5060")
    tx, (sent,) = layer.send_request(msg, ("::1", 5060), "UDP", 0.0)
    assert isinstance(sent, Transmit) and sent.tx_id == tx
    (failed,) = layer.transport_error(tx, 0.0)
    assert failed == TransportFailed(tx, msg, False)
    assert len(layer) == 0 and layer.next_deadline() is None
    assert layer.stats.transport_errors == 1
    assert layer.transport_error(tx, 0.0) == []  # already gone


def test_size_driven_tcp_falls_back_to_udp_once() -> None:
    layer = TransactionLayer()
    msg = _request("MESSAGE", "SIP/2.0/TCP 127.0.0.1:5060")
    tx, (sent,) = layer.send_request(msg, ("127.0.0.2", 5062), "TCP", 0.0, udp_fallback=True)
    assert isinstance(sent, Transmit) and sent.transport == "TCP"
    (again,) = layer.transport_error(tx, 0.1)
    assert isinstance(again, Transmit) and again.transport == "UDP"
    assert again.destination == ("127.0.0.2", 5062) and again.tx_id == tx
    assert b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKv1" in again.data
    assert layer.stats.udp_fallbacks == 1
    # Now a UDP transaction: Timer E retransmits, and the answer still matches.
    assert layer.next_deadline() == pytest.approx(0.6)
    (retx,) = layer.tick(0.6)
    assert isinstance(retx, Transmit) and retx.retransmission and retx.transport == "UDP"
    answer = parse_message(make_response(parse_message(again.data), 200).to_bytes())
    (got,) = layer.receive(answer, ("127.0.0.2", 5062), "UDP", 0.7)
    assert isinstance(got, ResponseReceived) and got.tx_id == tx
    # A second failure (over UDP) is final.
    (failed,) = layer.transport_error(tx, 0.8)
    assert isinstance(failed, TransportFailed)


def test_plain_tcp_request_does_not_fall_back() -> None:
    layer = TransactionLayer()
    tx, _ = layer.send_request(_request("MESSAGE", "SIP/2.0/TCP h"), ("127.0.0.2", 5), "TCP", 0.0)
    assert [type(e) for e in layer.transport_error(tx, 0.0)] == [TransportFailed]


def test_server_tcp_response_names_the_sent_by_port_as_fallback() -> None:
    layer = TransactionLayer()
    msg = parse_message(_request("INVITE", "SIP/2.0/TCP 127.0.0.1:5070").to_bytes())
    (got,) = layer.receive(msg, ("127.0.0.1", 40000), "TCP", 0.0)
    assert isinstance(got, RequestReceived)
    (out,) = layer.respond(got.tx_id, make_response(got.request, 200), 0.0)
    assert isinstance(out, Transmit) and out.destination == ("127.0.0.1", 40000)
    assert out.fallback == ("127.0.0.1", 5070)  # if the request's connection is gone
    (failed,) = layer.transport_error(got.tx_id, 0.2)  # neither could be used
    assert isinstance(failed, TransportFailed) and failed.server
    assert failed.request.method == "INVITE"
    assert layer.tick(100.0) == []  # no Timer L left behind: the TU was told


def test_timeouts_still_reported_after_an_error_elsewhere() -> None:
    layer = TransactionLayer()
    bad, _ = layer.send_request(
        _request("MESSAGE", "SIP/2.0/UDP h", "z9hG4bKa"), ("h", 1), "UDP", 0
    )
    good, _ = layer.send_request(
        _request("MESSAGE", "SIP/2.0/UDP h", "z9hG4bKb"), ("127.0.0.2", 1), "UDP", 0
    )
    layer.transport_error(bad, 0.0)
    events = layer.tick(32.0)
    assert [e.tx_id for e in events if isinstance(e, TransactionTimedOut)] == [good]


def test_header_name_prefix_and_random_pool() -> None:
    """Core helpers the server leans on (covered here so sip/ keeps 100% branches)."""
    from sipfleet.node.sip.ids import _RandomPool, random_hex

    headers = Headers([("X-Sipfleet-Sender", "a"), ("To", "b")])
    assert headers.has_name_prefix("x-sipfleet-") and not headers.has_name_prefix("x-other")
    pool = _RandomPool()
    first = pool.hex(4)
    pool.reset()
    assert len(first) == 8 and len(pool.hex(4)) == 8 and len(random_hex(12)) == 24
