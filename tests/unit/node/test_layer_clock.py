"""The transaction clock keeps firing whatever its event handler does."""

from __future__ import annotations

import asyncio

from sipfleet.node.sip import Event, Headers, SipRequest, Timers, TransactionLayer, new_branch
from sipfleet.node.timers import LayerClock


def _message() -> SipRequest:
    return SipRequest(
        "MESSAGE",
        "sip:a@127.0.0.1",
        Headers(
            [
                ("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch={new_branch()}"),
                ("From", "<sip:b@x>;tag=1"),
                ("To", "<sip:a@x>"),
                ("Call-ID", "c"),
                ("CSeq", "1 MESSAGE"),
            ]
        ),
    )


async def test_clock_rearms_after_the_handler_raises() -> None:
    loop = asyncio.get_running_loop()
    layer = TransactionLayer(Timers(t1=0.01, t2=0.04))
    fired: list[int] = []

    def boom(events: list[Event]) -> None:
        fired.append(len(events))
        raise RuntimeError("a send failed in a timer callback")

    errors: list[object] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        clock = LayerClock(loop, layer, boom)
        layer.send_request(_message(), ("127.0.0.1", 9), "UDP", loop.time())
        clock.rearm()
        await asyncio.sleep(0.2)
        clock.close()
    finally:
        loop.set_exception_handler(None)
    # Timer E kept firing (0.01, 0.03, 0.07, 0.11, ...) although each call raised.
    assert len(fired) >= 3 and len(errors) == len(fired)
