"""Transaction state machines in virtual time (RFC 3261 section 17)."""

from __future__ import annotations

import pytest
from sipfleet.node.sip import (
    AckReceived,
    Event,
    Headers,
    RequestReceived,
    ResponseReceived,
    SipRequest,
    SipResponse,
    Timers,
    TransactionLayer,
    TransactionTimedOut,
    Transmit,
    make_cancel,
    make_response,
    parse_message,
)

PEER = ("127.0.0.2", 5062)


def request(
    method: str, branch: str = "z9hG4bKb1", *, cseq: int = 1, to_tag: str | None = None
) -> SipRequest:
    to = "<sip:conf@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    return SipRequest(
        method,
        "sip:conf@127.0.0.1",
        Headers(
            [
                ("Via", f"SIP/2.0/UDP 127.0.0.2:5062;branch={branch}"),
                ("From", "<sip:a@127.0.0.2>;tag=ft"),
                ("To", to),
                ("Call-ID", "call-1"),
                ("CSeq", f"{cseq} {method}"),
                ("Max-Forwards", "70"),
            ]
        ),
    )


def wire(message: SipRequest | SipResponse) -> SipRequest | SipResponse:
    """As the peer's bytes would arrive: a fresh parse."""
    return parse_message(message.to_bytes())


def run(layer: TransactionLayer, until: float) -> list[tuple[float, Event]]:
    """Fire every timer up to `until`, recording when each event happened."""
    out: list[tuple[float, Event]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        out += [(deadline, event) for event in layer.tick(deadline)]
    return out


def transmits(events: list[tuple[float, Event]]) -> list[float]:
    return [t for t, e in events if isinstance(e, Transmit)]


# -- client non-INVITE ---------------------------------------------------------------


def test_client_non_invite_retransmits_t1_doubling_to_t2_then_timer_f() -> None:
    layer = TransactionLayer()
    _tx, first = layer.send_request(request("MESSAGE"), PEER, "UDP", 0.0)
    assert [type(e) for e in first] == [Transmit]
    events = run(layer, 100.0)
    assert transmits(events) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(e.retransmission for _, e in events if isinstance(e, Transmit))
    assert [(t, type(e)) for t, e in events][-1] == (32.0, TransactionTimedOut)
    assert layer.stats.retransmissions == 10 and layer.stats.timeouts == 1
    assert len(layer) == 0 and layer.next_deadline() is None


def test_client_non_invite_provisional_then_final() -> None:
    layer = TransactionLayer()
    msg = request("MESSAGE")
    tx, _ = layer.send_request(msg, PEER, "UDP", 0.0)
    trying = layer.receive(wire(make_response(msg, 100)), PEER, "UDP", 0.2)
    assert [type(e) for e in trying] == [ResponseReceived]
    # In Proceeding, Timer E fires at T2 intervals.
    assert transmits(run(layer, 9.0)) == [0.5, 4.5, 8.5]
    ok = wire(make_response(msg, 200))
    events = layer.receive(ok, PEER, "UDP", 9.0)
    assert len(events) == 1 and isinstance(events[0], ResponseReceived)
    assert events[0].tx_id == tx and events[0].request is msg
    assert layer.receive(ok, PEER, "UDP", 9.1) == []  # absorbed in Completed
    assert layer.stats.absorbed == 1
    assert run(layer, 100.0) == []  # Timer K ends it quietly
    assert len(layer) == 0


def test_client_over_tcp_never_retransmits() -> None:
    layer = TransactionLayer()
    msg = request("NOTIFY")
    layer.send_request(msg, PEER, "TCP", 0.0)
    events = run(layer, 100.0)
    assert [(t, type(e)) for t, e in events] == [(32.0, TransactionTimedOut)]
    layer.send_request(request("NOTIFY", "z9hG4bKb2"), PEER, "TCP", 0.0)
    layer.receive(wire(make_response(request("NOTIFY", "z9hG4bKb2"), 200)), PEER, "TCP", 1.0)
    assert len(layer) == 0  # no Timer K on a reliable transport


def test_send_request_rejects_what_cannot_be_a_transaction() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError, match="ACK"):
        layer.send_request(request("ACK"), PEER, "UDP", 0.0)
    with pytest.raises(ValueError, match="branch"):
        layer.send_request(request("BYE", "rfc2543"), PEER, "UDP", 0.0)
    layer.send_request(request("BYE"), PEER, "UDP", 0.0)
    with pytest.raises(ValueError, match="exists"):
        layer.send_request(request("BYE"), PEER, "UDP", 0.0)


def test_stray_response_is_dropped() -> None:
    layer = TransactionLayer()
    assert layer.receive(wire(make_response(request("BYE"), 200)), PEER, "UDP", 0.0) == []
    assert layer.stats.stray_responses == 1


# -- client INVITE -----------------------------------------------------------------------


def test_client_invite_timer_a_doubles_until_timer_b() -> None:
    layer = TransactionLayer()
    layer.send_request(request("INVITE"), PEER, "UDP", 0.0)
    events = run(layer, 100.0)
    assert transmits(events) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert isinstance(events[-1][1], TransactionTimedOut) and events[-1][0] == 32.0


def test_client_invite_non_2xx_is_acked_by_the_transaction() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    invite.headers.add("Route", "<sip:proxy;lr>")
    _tx, _ = layer.send_request(invite, PEER, "UDP", 0.0)
    layer.receive(wire(make_response(invite, 180, to_tag="tt")), PEER, "UDP", 0.1)
    assert transmits(run(layer, 5.0)) == []  # Proceeding: Timer A stopped
    busy = wire(make_response(invite, 486, to_tag="tt"))
    events = layer.receive(busy, PEER, "UDP", 5.0)
    assert [type(e) for e in events] == [Transmit, ResponseReceived]
    assert isinstance(events[0], Transmit)
    ack = parse_message(events[0].data)
    assert isinstance(ack, SipRequest) and ack.method == "ACK"
    assert ack.cseq == (1, "ACK") and ack.to_tag == "tt" and ack.via.branch == "z9hG4bKb1"
    assert ack.headers.get("Route") == "<sip:proxy;lr>"
    again = layer.receive(busy, PEER, "UDP", 5.5)
    assert [type(e) for e in again] == [Transmit]  # the ACK, re-sent
    assert run(layer, 100.0) == [] and len(layer) == 0  # Timer D


def test_client_invite_2xx_retransmissions_reach_the_tu() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    _tx, _ = layer.send_request(invite, PEER, "UDP", 0.0)
    ok = wire(make_response(invite, 200, to_tag="tt"))
    assert [type(e) for e in layer.receive(ok, PEER, "UDP", 0.3)] == [ResponseReceived]
    assert [type(e) for e in layer.receive(ok, PEER, "UDP", 0.8)] == [ResponseReceived]
    assert layer.receive(wire(make_response(invite, 180)), PEER, "UDP", 0.9) == []
    assert run(layer, 100.0) == [] and len(layer) == 0  # Timer M


# -- server non-INVITE ----------------------------------------------------------------------


def test_server_non_invite_absorbs_and_reanswers() -> None:
    layer = TransactionLayer()
    events = layer.receive(wire(request("MESSAGE")), PEER, "UDP", 0.0)
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    got = events[0]
    assert layer.receive(wire(request("MESSAGE")), PEER, "UDP", 0.1) == []
    provisional = layer.respond(got.tx_id, make_response(got.request, 100), 0.2)
    again = layer.receive(wire(request("MESSAGE")), PEER, "UDP", 0.3)
    assert [e.data for e in again if isinstance(e, Transmit)] == [
        provisional[0].data for _ in [0] if isinstance(provisional[0], Transmit)
    ]
    final = layer.respond(got.tx_id, make_response(got.request, 202, to_tag="x"), 0.4)
    assert isinstance(final[0], Transmit) and final[0].destination == PEER
    assert layer.respond(got.tx_id, make_response(got.request, 500), 0.5) == []
    resent = layer.receive(wire(request("MESSAGE")), PEER, "UDP", 1.0)
    assert isinstance(resent[0], Transmit) and resent[0].data == final[0].data
    assert layer.stats.absorbed == 3
    assert run(layer, 32.3) == [] and len(layer) == 1
    assert run(layer, 32.4) == [] and len(layer) == 0  # Timer J = 64*T1 after the final


def test_server_non_invite_over_tcp_ends_at_the_final_response() -> None:
    layer = TransactionLayer()
    (got,) = layer.receive(wire(request("BYE")), PEER, "TCP", 0.0)
    assert isinstance(got, RequestReceived)
    layer.respond(got.tx_id, make_response(got.request, 200), 0.1)
    assert len(layer) == 0
    assert layer.respond("no-such-tx", make_response(got.request, 200), 0.1) == []


def test_received_and_rport_are_stamped() -> None:
    layer = TransactionLayer()
    msg = request("MESSAGE")
    msg.headers.set("Via", "SIP/2.0/UDP host.invalid;branch=z9hG4bKr;rport, SIP/2.0/UDP next")
    (got,) = layer.receive(wire(msg), PEER, "UDP", 0.0)
    assert isinstance(got, RequestReceived)
    vias = got.request.vias
    assert vias[0].params == {"branch": "z9hG4bKr", "rport": "5062", "received": "127.0.0.2"}
    assert (vias[0].received, vias[0].rport) == ("127.0.0.2", 5062)
    assert vias[1].rport is None
    assert vias[1].host == "next"


def test_merged_request_gets_482() -> None:
    layer = TransactionLayer()
    layer.receive(wire(request("MESSAGE", "z9hG4bK1")), PEER, "UDP", 0.0)
    other_path = wire(request("MESSAGE", "z9hG4bK2"))
    (reply,) = layer.receive(other_path, ("127.0.0.3", 5060), "UDP", 0.1)
    assert isinstance(reply, Transmit) and reply.data.startswith(b"SIP/2.0 482 Loop Detected")
    # No rport: to the source address (received) at the sent-by port (18.2.2).
    assert reply.destination == ("127.0.0.3", 5062) and layer.stats.merged == 1
    in_dialog = wire(request("MESSAGE", "z9hG4bK3", to_tag="t"))
    assert isinstance(layer.receive(in_dialog, PEER, "UDP", 0.2)[0], RequestReceived)


def test_unparseable_mandatory_fields_are_dropped() -> None:
    layer = TransactionLayer()
    broken = request("MESSAGE")
    broken.headers.set("CSeq", "x")
    assert layer.receive(broken, PEER, "UDP", 0.0) == []
    assert layer.stats.dropped == 1


# -- server INVITE --------------------------------------------------------------------------


def test_server_invite_sends_100_trying_after_200ms() -> None:
    layer = TransactionLayer()
    layer.receive(wire(request("INVITE")), PEER, "UDP", 0.0)
    assert layer.next_deadline() == pytest.approx(0.2)
    assert run(layer, 0.19) == []
    ((_when, trying),) = run(layer, 0.2)
    assert isinstance(trying, Transmit) and trying.data.startswith(b"SIP/2.0 100 Trying")
    assert parse_message(trying.data).to_tag is None
    # A retransmitted INVITE is answered with the 100 again.
    (again,) = layer.receive(wire(request("INVITE")), PEER, "UDP", 0.3)
    assert isinstance(again, Transmit) and again.data == trying.data


def test_server_invite_no_100_when_the_tu_answers_quickly() -> None:
    layer = TransactionLayer()
    (got,) = layer.receive(wire(request("INVITE")), PEER, "UDP", 0.0)
    assert isinstance(got, RequestReceived)
    layer.respond(got.tx_id, make_response(got.request, 180, to_tag="t"), 0.1)
    assert run(layer, 0.3) == []


def test_server_invite_non_2xx_timer_g_until_h() -> None:
    layer = TransactionLayer()
    (got,) = layer.receive(wire(request("INVITE")), PEER, "UDP", 0.0)
    assert isinstance(got, RequestReceived)
    layer.respond(got.tx_id, make_response(got.request, 486, to_tag="t"), 0.0)
    events = run(layer, 100.0)
    assert transmits(events) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    last_time, last = events[-1]
    assert last_time == 32.0 and isinstance(last, TransactionTimedOut) and last.server


def test_server_invite_ack_for_non_2xx_is_absorbed() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    (got,) = layer.receive(wire(invite), PEER, "UDP", 0.0)
    assert isinstance(got, RequestReceived)
    busy = make_response(got.request, 486, to_tag="t")
    layer.respond(got.tx_id, busy, 0.0)
    assert transmits(run(layer, 0.6)) == [0.5]
    (resent,) = layer.receive(wire(invite), PEER, "UDP", 0.7)  # INVITE again: final again
    assert isinstance(resent, Transmit) and resent.data == busy.to_bytes()
    ack = request("ACK", to_tag="t")
    assert layer.receive(wire(ack), PEER, "UDP", 0.8) == []
    assert layer.receive(wire(ack), PEER, "UDP", 0.9) == []  # in Confirmed too
    assert run(layer, 5.7) == [] and len(layer) == 1
    assert run(layer, 5.8) == [] and len(layer) == 0  # Timer I = T4


def test_server_invite_2xx_retransmitted_until_ack() -> None:
    layer = TransactionLayer()
    (got,) = layer.receive(wire(request("INVITE")), PEER, "UDP", 0.0)
    assert isinstance(got, RequestReceived)
    layer.respond(got.tx_id, make_response(got.request, 200, to_tag="t"), 0.1)
    assert layer.receive(wire(request("INVITE")), PEER, "UDP", 0.2) == []  # absorbed
    assert transmits(run(layer, 2.0)) == [0.6, 1.6]
    ack = request("ACK", "z9hG4bKnew", to_tag="t")  # a 2xx ACK has its own branch
    (acked,) = layer.receive(wire(ack), PEER, "UDP", 2.0)
    assert isinstance(acked, AckReceived) and acked.tx_id == got.tx_id
    assert layer.receive(wire(ack), PEER, "UDP", 2.1) == []
    assert run(layer, 100.0) == [] and len(layer) == 0  # Timer L, quietly


def test_server_invite_2xx_never_acked_times_out() -> None:
    layer = TransactionLayer()
    (got,) = layer.receive(wire(request("INVITE")), PEER, "UDP", 0.0)
    assert isinstance(got, RequestReceived)
    layer.respond(got.tx_id, make_response(got.request, 200, to_tag="t"), 0.0)
    events = run(layer, 100.0)
    assert transmits(events) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert isinstance(events[-1][1], TransactionTimedOut)


def test_ack_without_transaction_goes_to_the_tu() -> None:
    layer = TransactionLayer()
    (ack,) = layer.receive(wire(request("ACK", to_tag="t")), PEER, "UDP", 0.0)
    assert isinstance(ack, AckReceived) and ack.tx_id is None


def test_cancel_names_the_invite_it_cancels() -> None:
    layer = TransactionLayer()
    (invite,) = layer.receive(wire(request("INVITE")), PEER, "UDP", 0.0)
    (cancel,) = layer.receive(wire(request("CANCEL")), PEER, "UDP", 0.1)
    assert isinstance(invite, RequestReceived) and isinstance(cancel, RequestReceived)
    assert cancel.cancels == invite.tx_id and cancel.tx_id != invite.tx_id
    lonely_cancel = request("CANCEL", "z9hG4bKother", cseq=2)
    (lonely,) = layer.receive(wire(lonely_cancel), PEER, "UDP", 0.2)
    assert isinstance(lonely, RequestReceived) and lonely.cancels is None


def test_stale_timer_entries_are_skipped() -> None:
    layer = TransactionLayer()
    (got,) = layer.receive(wire(request("INVITE")), PEER, "UDP", 0.0)
    assert isinstance(got, RequestReceived)
    layer.respond(got.tx_id, make_response(got.request, 180, to_tag="t"), 0.05)
    # The 100 Trying timer entry is still queued but no longer live.
    assert layer.next_deadline() is None
    assert layer.tick(1.0) == []


def test_server_invite_over_tcp_has_no_retransmission_timers() -> None:
    layer = TransactionLayer()
    (busy,) = layer.receive(wire(request("INVITE")), PEER, "TCP", 0.0)
    (ok,) = layer.receive(wire(request("INVITE", "z9hG4bK2", cseq=2)), PEER, "TCP", 0.0)
    assert isinstance(busy, RequestReceived) and isinstance(ok, RequestReceived)
    layer.respond(busy.tx_id, make_response(busy.request, 486, to_tag="t"), 0.0)
    layer.respond(ok.tx_id, make_response(ok.request, 200, to_tag="t"), 0.0)
    events = run(layer, 100.0)
    # No Timer G, no 2xx retransmission: only Timer H and Timer L fire.
    assert [(t, type(e)) for t, e in events] == [
        (32.0, TransactionTimedOut),
        (32.0, TransactionTimedOut),
    ]


def test_tick_skips_entries_of_answered_timers() -> None:
    layer = TransactionLayer()
    (got,) = layer.receive(wire(request("INVITE")), PEER, "UDP", 0.0)
    assert isinstance(got, RequestReceived)
    layer.respond(got.tx_id, make_response(got.request, 180, to_tag="t"), 0.05)
    assert layer.tick(1.0) == []


def test_same_dialog_cseq_on_two_branches_keeps_the_newer_ack_match() -> None:
    layer = TransactionLayer()
    answered = []
    for branch, at in (("z9hG4bKa", 0.0), ("z9hG4bKb", 10.0)):
        (got,) = layer.receive(wire(request("INVITE", branch, to_tag="t")), PEER, "UDP", at)
        assert isinstance(got, RequestReceived)
        layer.respond(got.tx_id, make_response(got.request, 200), at)
        answered.append(got.tx_id)
    run(layer, 33.0)  # the first ends; the ACK match belongs to the second
    (ack,) = layer.receive(wire(request("ACK", "z9hG4bKc", to_tag="t")), PEER, "UDP", 33.0)
    assert isinstance(ack, AckReceived) and ack.tx_id == answered[1]


def test_cancel_of_a_pending_client_invite() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    invite.headers.add("Route", "<sip:p;lr>")
    layer.send_request(invite, PEER, "UDP", 0.0)
    cancel = make_cancel(invite)
    assert cancel.method == "CANCEL" and cancel.uri == invite.uri
    assert cancel.cseq == (1, "CANCEL") and cancel.via.branch == invite.via.branch
    assert cancel.headers.get("Route") == "<sip:p;lr>" and cancel.to_tag is None
    tx, events = layer.send_request(cancel, PEER, "UDP", 0.1)
    assert tx.endswith("|CANCEL") and isinstance(events[0], Transmit)
    # The peer's server side matches the CANCEL to its INVITE.
    server = TransactionLayer()
    (got_invite,) = server.receive(wire(invite), ("127.0.0.1", 5060), "UDP", 0.0)
    (got_cancel,) = server.receive(wire(cancel), ("127.0.0.1", 5060), "UDP", 0.1)
    assert isinstance(got_invite, RequestReceived) and isinstance(got_cancel, RequestReceived)
    assert got_cancel.cancels == got_invite.tx_id


# -- CANCEL of a ringing client INVITE (RFC 3261 9.1, 17.1.1.2, Timer C 16.8) --------------


def sent_methods(events: list[tuple[float, Event]]) -> list[tuple[float, str]]:
    out = []
    for at, event in events:
        if isinstance(event, Transmit):
            message = parse_message(event.data)
            assert isinstance(message, SipRequest)
            out.append((at, message.method))
    return out


def test_ringing_invite_is_cancelled_by_timer_c_not_dropped_by_timer_b() -> None:
    layer = TransactionLayer(Timers(c=60.0))
    invite = request("INVITE")
    tx, _ = layer.send_request(invite, PEER, "UDP", 0.0)
    layer.receive(wire(make_response(invite, 180, to_tag="tt")), PEER, "UDP", 1.0)
    layer.receive(wire(make_response(invite, 180, to_tag="tt")), PEER, "UDP", 20.0)
    events = run(layer, 79.9)
    assert events == []  # no Timer B in Proceeding: the phone is still ringing
    events = run(layer, 80.0)  # Timer C, restarted by the second 180
    assert sent_methods(events) == [(80.0, "CANCEL")]
    cancel = parse_message(events[0][1].data)  # type: ignore[union-attr]
    assert isinstance(cancel, SipRequest) and cancel.via.branch == invite.via.branch
    terminated = wire(make_response(invite, 487, to_tag="tt"))
    out = layer.receive(terminated, PEER, "UDP", 80.2)
    assert [type(e) for e in out] == [Transmit, ResponseReceived]  # ACK, then the TU
    assert isinstance(out[1], ResponseReceived) and out[1].tx_id == tx


def test_cancel_waits_for_a_provisional_and_bounds_the_wait() -> None:
    layer = TransactionLayer()
    invite = request("INVITE")
    tx, _ = layer.send_request(invite, PEER, "TCP", 0.0)
    assert layer.cancel(tx, 1.0) == []  # 9.1: not before a provisional response
    out = layer.receive(wire(make_response(invite, 180, to_tag="tt")), PEER, "TCP", 2.0)
    assert [type(e) for e in out] == [Transmit, ResponseReceived]
    assert sent_methods([(2.0, out[0])]) == [(2.0, "CANCEL")]
    assert layer.cancel(tx, 3.0) == []  # once
    events = run(layer, 2.0 + 32.0)  # no final response within 64*T1 of the CANCEL
    timeouts = [e for _, e in events if isinstance(e, TransactionTimedOut)]
    # the INVITE and the CANCEL (nobody answered it either, Timer F)
    assert sorted(e.tx_id for e in timeouts) == sorted([tx, f"{invite.via.branch}|CANCEL"])
    assert len(layer) == 0


def test_unanswered_invite_still_ends_with_timer_b() -> None:
    layer = TransactionLayer()
    tx, _ = layer.send_request(request("INVITE"), PEER, "TCP", 0.0)
    layer.cancel(tx, 1.0)
    events = run(layer, 40.0)
    assert sent_methods(events) == []  # never a CANCEL without a provisional
    assert [(t, type(e)) for t, e in events] == [(32.0, TransactionTimedOut)]
