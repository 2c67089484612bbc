"""Drives the core's TransactionLayer: one asyncio timer armed at `next_deadline()`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sipfleet.node.sip.transaction import Event, TransactionLayer


class LayerClock:
    """Keeps exactly one loop timer for the layer, re-armed after every call into it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        layer: TransactionLayer,
        on_events: Callable[[list[Event]], None],
    ) -> None:
        self._loop, self._layer, self._on_events = loop, layer, on_events
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = float("inf")

    def rearm(self) -> None:
        deadline = self._layer.next_deadline()
        if deadline is None or deadline >= self._armed_at:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = deadline
        self._handle = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        """Run the due timers; the clock is re-armed whatever `on_events` raises,
        so one failure never stops retransmissions and timeouts of the others."""
        self._handle, self._armed_at = None, float("inf")
        try:
            events = self._layer.tick(self._loop.time())
            if events:
                self._on_events(events)
        finally:
            self.rearm()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
