"""RFC 3261 section 17 transactions (plus the RFC 6026 Accepted state), sans-I/O.

The layer never reads a clock: every call takes `now` (seconds, monotonic
origin of your choice) and timers fire from `tick(now)`. Call `tick` at
`next_deadline()`. Events come back as lists; the caller sends `Transmit`s
and hands the rest to its transaction user (TU).

Responses go where RFC 3261 18.2.2 and RFC 3581 say (see `via.response_route`);
`received`/`rport` are filled into the top Via (RFC 3261 18.2.1, RFC 3581).
Retransmission timers run only on unreliable transports (UDP). A transport
that cannot send reports it with `transport_error` (17.1.4, 17.2.4).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from .dialog import make_cancel
from .errors import SipParseError
from .fields import Via
from .ids import MAGIC_COOKIE
from .message import Headers, Outbound, SipMessage, SipRequest, SipResponse
from .response import make_response
from .via import Address, is_reliable, response_route, stamp_via, with_via_transport


@dataclass(frozen=True)
class Timers:
    """RFC 3261 timer values (seconds); `trying` is the 17.2.1 delay before
    an INVITE server transaction sends 100 Trying on its own; `c` is how long a
    client INVITE waits for a final response after its latest provisional before
    it is CANCELled (Timer C, 16.6 step 11 and 16.8: more than 3 minutes)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    trying: float = 0.2
    c: float = 181.0


# Events are read-only by convention, not frozen: a frozen dataclass's __init__
# sets each field through object.__setattr__ (0.51 vs 0.14 us per event, timeit),
# and every MESSAGE answered and every fan-out delivery makes two events.


@dataclass(slots=True)
class Transmit:
    """Send `data` to `destination` over `transport`."""

    data: bytes
    destination: Address
    transport: str
    retransmission: bool = False
    tx_id: str = ""  # the transaction sending it ("" for none): report send errors on it
    # Reliable transports, responses (RFC 3261 18.2.2): send only on the open connection
    # to `destination`; if there is none, open one to `fallback` instead.
    fallback: Address | None = None


@dataclass(slots=True)
class RequestReceived:
    """A new server transaction `tx_id`; answer it with `respond(tx_id, ...)`.
    For CANCEL, `cancels` is the INVITE server transaction it matches (None:
    answer the CANCEL with 481)."""

    tx_id: str
    request: SipRequest
    source: Address
    transport: str
    cancels: str | None = None


@dataclass(slots=True)
class AckReceived:
    """An ACK for a 2xx (it belongs to the dialog, not a transaction).
    `tx_id` is the INVITE server transaction whose 2xx it confirms, if known."""

    request: SipRequest
    source: Address
    transport: str
    tx_id: str | None


@dataclass(slots=True)
class ResponseReceived:
    """A response for client transaction `tx_id` (retransmitted 2xx to an
    INVITE are passed up too: the TU must ACK each)."""

    tx_id: str
    response: SipResponse
    request: SipRequest


@dataclass(slots=True)
class TransactionTimedOut:
    """Client: Timer B/F fired (treat as 408). Server: Timer H fired (no ACK
    for a final non-2xx), or Timer L fired with the 2xx never ACKed (the TU
    should end the session with BYE)."""

    tx_id: str
    request: SipRequest
    server: bool


@dataclass(slots=True)
class TransportFailed:
    """The transport could not send for transaction `tx_id`, which is now
    terminated (RFC 3261 17.1.4, 17.2.4). A client TU treats it as a 503
    (8.1.3.1); a server TU treats an INVITE's as an un-ACKed 2xx."""

    tx_id: str
    request: SipRequest
    server: bool


Event = (
    RequestReceived
    | AckReceived
    | ResponseReceived
    | TransactionTimedOut
    | TransportFailed
    | Transmit
)


@dataclass
class Stats:
    """Plain counters (map them to metrics)."""

    transactions: int = 0
    retransmissions: int = 0  # requests/responses we re-sent
    absorbed: int = 0  # retransmitted requests/responses we received and absorbed
    timeouts: int = 0
    merged: int = 0  # 482 answers to merged requests (8.2.2.2)
    stray_responses: int = 0
    dropped: int = 0  # unparseable mandatory fields
    transport_errors: int = 0  # transactions ended by a transport failure
    udp_fallbacks: int = 0  # size-driven TCP requests re-sent over UDP (18.1.1)


# Stands in for the request of a finished non-INVITE transaction, which only
# lingers to absorb retransmissions: dropping the parsed request keeps the many
# lingering transactions (Timer J/K on UDP) cheap for memory and the GC.
_RELEASED = SipRequest("", "")


@dataclass(eq=False, slots=True)
class _Tx:
    id: str
    request: SipRequest
    peer: Address
    transport: str
    server: bool
    state: str
    reliable: bool
    data: bytes = b""  # what we retransmit: the request (client) or last response (server)
    ack: bytes = b""  # client INVITE: the ACK for a non-2xx
    interval: float = 0.0
    acked: bool = False
    cancel: bool = False  # client INVITE: CANCEL asked for (sent once a provisional came)
    keys: list[tuple[dict[object, str], object]] = field(default_factory=list)
    timers: dict[str, float] = field(default_factory=dict)
    # Server: where to open a new connection if the request's is gone (18.2.2).
    # Client: the UDP address to fall back to if a size-driven TCP send fails (18.1.1).
    fallback: Address | None = None

    @property
    def invite(self) -> bool:
        return self.request.method == "INVITE"


def _stamp_via(request: SipRequest, source: Address) -> Via:
    """Add received/rport to the top Via (RFC 3261 18.2.1, RFC 3581); return it."""
    via = request.via
    stamped = stamp_via(via, source)
    if stamped is not via:
        request.replace_top_via(stamped)
    return stamped


def _server_key(request: SipRequest) -> str:
    via = request.via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return f"{branch}|{via.sent_by}|{method}"
    # RFC 2543 peers: match on the request's identifying fields (17.2.3).
    number, _ = request.cseq
    fields = (request.uri, request.from_tag or "", request.call_id, str(number), str(via))
    return "|".join(("2543", *fields, method))


def _ack_for(request: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client INVITE transaction sends for a non-2xx (17.1.1.3)."""
    headers = Headers()
    headers.add("Via", request.headers.get_list("Via")[0])
    for name in ("Route", "From", "Call-ID"):
        for value in request.headers.get_all(name):
            headers.add(name, value)
    headers.add("To", response.headers.get("To") or "")
    headers.add("CSeq", f"{request.cseq[0]} ACK")
    headers.add("Max-Forwards", "70")
    return SipRequest("ACK", request.uri, headers)


class TransactionLayer:
    """Server and client transactions keyed per RFC 3261 17.1.3 / 17.2.3."""

    def __init__(self, timers: Timers = Timers()) -> None:
        self.timers = timers
        self.stats = Stats()
        self._txs: dict[str, _Tx] = {}
        self._merge: dict[object, str] = {}  # (from tag, Call-ID, CSeq) -> server tx
        self._accepted: dict[object, str] = {}  # (Call-ID, CSeq number) -> INVITE server tx
        self._heap: list[tuple[float, int, str, str]] = []
        self._seq = 0

    def __len__(self) -> int:
        """Live transactions."""
        return len(self._txs)

    # -- input -----------------------------------------------------------------

    def receive(
        self, message: SipMessage, source: Address, transport: str, now: float
    ) -> list[Event]:
        """Feed a parsed (and, for requests, validated) message."""
        try:
            if isinstance(message, SipRequest):
                return self._receive_request(message, source, transport, now)
            return self._receive_response(message, now)
        except SipParseError:
            self.stats.dropped += 1
            return []

    def _receive_request(
        self, request: SipRequest, source: Address, transport: str, now: float
    ) -> list[Event]:
        via = _stamp_via(request, source)
        key = _server_key(request)
        tx = self._txs.get(key)
        if request.method == "ACK":
            return self._receive_ack(request, tx, source, transport, now)
        if tx is not None:
            self.stats.absorbed += 1
            if tx.data and tx.state in ("proceeding", "completed"):
                return [self._transmit(tx, tx.data, True)]
            return []
        route = response_route(via, source, transport)
        merge_key = None
        if request.to_tag is None:
            merge_key = (request.from_tag, request.call_id, request.cseq)
            if self._merge.get(merge_key, key) != key:
                self.stats.merged += 1
                data = make_response(request, 482).to_bytes()
                return [Transmit(data, route.address, transport, fallback=route.fallback)]
        reliable = is_reliable(transport)
        state = "proceeding" if request.method == "INVITE" else "trying"
        tx = _Tx(key, request, route.address, transport, True, state, reliable)
        tx.fallback = route.fallback
        self._add(tx)
        if merge_key is not None:
            self._index(tx, self._merge, merge_key)
        if tx.invite:
            self._schedule(tx, "trying", now + self.timers.trying)
        cancels = None
        if request.method == "CANCEL":
            target = key.rsplit("|", 1)[0] + "|INVITE"
            cancels = target if target in self._txs else None
        return [RequestReceived(key, request, source, transport, cancels)]

    def _receive_ack(
        self, ack: SipRequest, tx: _Tx | None, source: Address, transport: str, now: float
    ) -> list[Event]:
        if tx is not None and tx.state in ("completed", "confirmed"):
            if tx.state == "completed":  # ACK for our non-2xx: absorb (17.2.1)
                tx.state = "confirmed"
                tx.timers.clear()
                self._schedule(tx, "I", now + (0 if tx.reliable else self.timers.t4))
            else:
                self.stats.absorbed += 1
            return []
        accepted = self._txs.get(self._accepted.get((ack.call_id, ack.cseq[0]), ""))
        if accepted is not None:
            if accepted.acked:
                self.stats.absorbed += 1
                return []
            accepted.acked = True
            accepted.timers.pop("2xx", None)
            return [AckReceived(ack, source, transport, accepted.id)]
        return [AckReceived(ack, source, transport, None)]

    def _receive_response(self, response: SipResponse, now: float) -> list[Event]:
        key = f"{response.via.branch}|{response.cseq[1]}"
        tx = self._txs.get(key)
        if tx is None or tx.server:
            self.stats.stray_responses += 1
            return []
        status = response.status
        event = ResponseReceived(tx.id, response, tx.request)
        if tx.state == "accepted" and 200 <= status < 300:
            return [event]
        if tx.state not in ("trying", "calling", "proceeding"):
            self.stats.absorbed += 1
            if tx.state == "completed" and tx.ack and status >= 300:
                return [Transmit(tx.ack, tx.peer, tx.transport, True, tx.id)]
            return []
        if status < 200:
            tx.state = "proceeding"  # Timer E now repeats at T2; Timer A stops
            tx.timers.pop("A", None)
            if not tx.invite or "cancelled" in tx.timers:
                return [event]
            # 17.1.1.2: Timer B runs in Calling only; from here on Timer C bounds
            # the wait for a final response (reset by every provisional, 16.8).
            tx.timers.pop("B", None)
            if tx.cancel:
                return [*self._send_cancel(tx, now), event]
            self._schedule(tx, "C", now + self.timers.c)
            return [event]
        tx.timers.clear()
        if tx.invite and status < 300:
            tx.state = "accepted"
            self._schedule(tx, "M", now + 64 * self.timers.t1)
            return [event]
        tx.state = "completed"
        out: list[Event] = []
        if tx.invite:
            tx.ack = _ack_for(tx.request, response).to_bytes()
            out.append(Transmit(tx.ack, tx.peer, tx.transport, False, tx.id))
            self._linger(tx, "D", 32.0, now)
        else:
            tx.request = _RELEASED
            self._linger(tx, "K", self.timers.t4, now)
        out.append(event)
        return out

    # -- TU calls ----------------------------------------------------------------

    def respond(self, tx_id: str, response: SipResponse, now: float) -> list[Event]:
        """Send `response` on server transaction `tx_id`. Returns [] when the
        transaction is gone or already answered finally."""
        tx = self._txs.get(tx_id)
        if tx is None or not tx.server or tx.state not in ("trying", "proceeding"):
            return []
        tx.data = response.to_bytes()
        tx.timers.pop("trying", None)
        status = response.status
        if status < 200:
            tx.state = "proceeding"
        elif tx.invite and status < 300:
            tx.state = "accepted"
            self._index(tx, self._accepted, (tx.request.call_id, tx.request.cseq[0]))
            self._schedule(tx, "L", now + 64 * self.timers.t1)
            if not tx.reliable:
                tx.interval = self.timers.t1
                self._schedule(tx, "2xx", now + tx.interval)
        elif tx.invite:
            tx.state = "completed"
            self._schedule(tx, "H", now + 64 * self.timers.t1)
            if not tx.reliable:
                tx.interval = self.timers.t1
                self._schedule(tx, "G", now + tx.interval)
        else:
            tx.state = "completed"
            tx.request = _RELEASED
            self._linger(tx, "J", 64 * self.timers.t1, now)
        return [self._transmit(tx, tx.data)]

    def send_request(
        self,
        request: SipRequest,
        destination: Address,
        transport: str,
        now: float,
        *,
        udp_fallback: bool = False,
    ) -> tuple[str, list[Event]]:
        """Start a client transaction. The request must carry a top Via with
        a fresh RFC 3261 branch (`ids.new_branch()`). Not for ACK (send the
        ACK for a 2xx yourself, as a `Transmit`). `udp_fallback`: the request
        goes over TCP only for its size and, should the connection fail, is
        re-sent over UDP to the same address (RFC 3261 18.1.1). Raises
        ValueError for an ACK, a missing or reused branch."""
        outbound = Outbound(request, request.via.branch or "", request.to_bytes())
        return self.send_prepared(outbound, destination, transport, now, udp_fallback=udp_fallback)

    def send_prepared(
        self,
        outbound: Outbound,
        destination: Address,
        transport: str,
        now: float,
        *,
        udp_fallback: bool = False,
    ) -> tuple[str, list[Event]]:
        """`send_request` for a request whose branch and wire form were built with
        it (`Dialog.prepare`, the fan-out fast path), so neither is derived again.
        Raises ValueError like send_request."""
        request, branch = outbound.request, outbound.branch
        if request.method == "ACK":
            raise ValueError("ACK is not sent in a transaction; transmit it directly")
        if not branch.startswith(MAGIC_COOKIE):
            raise ValueError("the top Via needs a branch starting with z9hG4bK (ids.new_branch())")
        key = f"{branch}|{request.method}"
        if key in self._txs:
            raise ValueError(f"a client transaction with branch {branch} already exists")
        reliable = is_reliable(transport)
        state = "calling" if request.method == "INVITE" else "trying"
        tx = _Tx(key, request, destination, transport, False, state, reliable)
        tx.data = outbound.data
        if udp_fallback and reliable:
            tx.fallback = destination
        self._add(tx)
        self._schedule(tx, "B" if tx.invite else "F", now + 64 * self.timers.t1)
        if not reliable:
            self._start_retransmitting(tx, now)
        return key, [Transmit(tx.data, destination, transport, False, key)]

    def transport_error(self, tx_id: str, now: float) -> list[Event]:
        """The transport failed to send for transaction `tx_id` (a send raised,
        or a TCP connection could not be opened or was lost).

        - a client request sent over TCP only for its size is re-sent over UDP
          (RFC 3261 18.1.1), its top Via saying UDP, with UDP's timers;
        - otherwise the transaction ends with `TransportFailed` (17.1.4, 17.2.4).
        (A response whose connection is gone is re-sent to `Transmit.fallback`
        by the caller before it reports an error here.)

        Unknown or already terminated transactions give []."""
        tx = self._txs.get(tx_id)
        if tx is None:
            return []
        if tx.fallback is not None and not tx.server:
            fallback, tx.fallback = tx.fallback, None
            self.stats.udp_fallbacks += 1
            tx.transport, tx.reliable, tx.peer = "UDP", False, fallback
            tx.data = with_via_transport(tx.data, "UDP")
            self._start_retransmitting(tx, now)
            return [Transmit(tx.data, tx.peer, tx.transport, False, tx.id)]
        self._terminate(tx)
        self.stats.transport_errors += 1
        return [TransportFailed(tx.id, tx.request, tx.server)]

    def _start_retransmitting(self, tx: _Tx, now: float) -> None:
        """Arm Timer A (INVITE) or E (others) at T1 for a client transaction on UDP."""
        tx.interval = self.timers.t1
        self._schedule(tx, "A" if tx.invite else "E", now + tx.interval)

    def cancel(self, tx_id: str, now: float) -> list[Event]:
        """CANCEL client INVITE transaction `tx_id` (RFC 3261 9.1): at once if it
        got a provisional response, else as soon as one comes (9.1 forbids it
        earlier; Timer B still ends a transaction nothing answered). The INVITE
        then ends with its final response (487, ACKed here) or 64*T1 after the
        CANCEL (TransactionTimedOut). Nothing happens for another or a finished
        transaction."""
        tx = self._txs.get(tx_id)
        if tx is None or tx.server or not tx.invite or tx.cancel:
            return []
        tx.cancel = True
        return self._send_cancel(tx, now) if tx.state == "proceeding" else []

    def _send_cancel(self, tx: _Tx, now: float) -> list[Event]:
        tx.cancel = True
        tx.timers.pop("C", None)
        self._schedule(tx, "cancelled", now + 64 * self.timers.t1)
        _, events = self.send_request(make_cancel(tx.request), tx.peer, tx.transport, now)
        return events

    # -- timers ------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `tick` next has work, or None."""
        heap = self._heap
        while heap:
            when, _, tx_id, name = heap[0]
            tx = self._txs.get(tx_id)
            if tx is not None and tx.timers.get(name) == when:
                return when
            heapq.heappop(heap)
        return None

    def tick(self, now: float) -> list[Event]:
        """Fire every timer due at `now`."""
        out: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, tx_id, name = heapq.heappop(heap)
            tx = self._txs.get(tx_id)
            if tx is None or tx.timers.get(name) != when:
                continue  # stale entry
            del tx.timers[name]
            out += self._fire(tx, name, now)
        return out

    def _fire(self, tx: _Tx, name: str, now: float) -> list[Event]:
        t = self.timers
        if name == "trying":
            tx.data = make_response(tx.request, 100).to_bytes()
            return [self._transmit(tx, tx.data)]
        if name in ("A", "E", "G", "2xx"):
            if name == "A":
                tx.interval *= 2  # Timer A doubles without a cap
            elif name == "E" and tx.state == "proceeding":
                tx.interval = t.t2
            else:
                tx.interval = min(tx.interval * 2, t.t2)
            self._schedule(tx, name, now + tx.interval)
            self.stats.retransmissions += 1
            return [Transmit(tx.data, tx.peer, tx.transport, True, tx.id)]
        if name == "C":  # 16.8: no final response in time
            return self._send_cancel(tx, now)
        self._terminate(tx)
        if name in ("B", "F", "H", "cancelled") or (name == "L" and not tx.acked):
            self.stats.timeouts += 1
            return [TransactionTimedOut(tx.id, tx.request, tx.server)]
        return []  # D, I, J, K, M, or L after the ACK: just end

    # -- bookkeeping ---------------------------------------------------------------

    @staticmethod
    def _transmit(tx: _Tx, data: bytes, retransmission: bool = False) -> Transmit:
        """A server transaction's send: over a reliable transport, on the request's
        connection, else on a new one to the Via's address (RFC 3261 18.2.2)."""
        return Transmit(data, tx.peer, tx.transport, retransmission, tx.id, tx.fallback)

    def _add(self, tx: _Tx) -> None:
        self._txs[tx.id] = tx
        self.stats.transactions += 1

    def _index(self, tx: _Tx, index: dict[object, str], key: object) -> None:
        index[key] = tx.id
        tx.keys.append((index, key))

    def _terminate(self, tx: _Tx) -> None:
        tx.state = "terminated"
        tx.timers.clear()
        self._txs.pop(tx.id, None)
        for index, key in tx.keys:
            if index.get(key) == tx.id:
                del index[key]

    def _linger(self, tx: _Tx, name: str, delay: float, now: float) -> None:
        """Keep a finished transaction to absorb retransmissions (unreliable
        transports only); on reliable ones it ends at once."""
        if tx.reliable:
            self._terminate(tx)
        else:
            self._schedule(tx, name, now + delay)

    def _schedule(self, tx: _Tx, name: str, when: float) -> None:
        tx.timers[name] = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, tx.id, name))
