"""Prometheus metrics (`sipfleet_node_*`), one registry per server instance."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        p = "sipfleet_node_"
        self.members = Gauge(
            p + "members", "Members joined to the local shard", ["group"], registry=r
        )
        self.capacity = Gauge(
            p + "capacity", "Member capacity of the local shard", ["group"], registry=r
        )
        self.messages_in = Counter(
            p + "messages_in", "Group MESSAGEs received from members", registry=r
        )
        self.messages_out = Counter(
            p + "messages_out", "MESSAGE deliveries sent to members", registry=r
        )
        self.fanout_seconds = Histogram(
            p + "fanout_seconds",
            "Time from a group MESSAGE arriving to its local deliveries "
            "being handed to the transport (messages with at least one local recipient)",
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.transactions = Counter(
            p + "transactions", "SIP transactions started (server and client)", registry=r
        )
        self.retransmissions = Counter(
            p + "retransmissions", "SIP retransmissions sent", registry=r
        )
        self.parse_errors = Counter(p + "parse_errors", "Malformed SIP input received", registry=r)
        self.redirects = Counter(
            p + "redirects", "302 redirects sent on join", ["group"], registry=r
        )
        self.transfers = Counter(
            p + "transfers", "Member transfers by outcome (moved, failed)", ["outcome"], registry=r
        )
        self.event_loop_lag = Gauge(
            p + "event_loop_lag_seconds", "Event loop lag, sampled", registry=r
        )
        self.rate_limited = Counter(
            p + "rate_limited", "Requests dropped by the per-source rate limit", registry=r
        )
        # Extensions beyond the contract.
        self.duplicates = Counter(
            p + "duplicate_deliveries",
            "Deliveries to a member in the middle of a transfer "
            "(an upper bound on duplicates: its new server may deliver the same message)",
            registry=r,
        )
        self.forwarded = Counter(
            p + "tree_forwards",
            "Group messages and roster updates forwarded to other servers",
            ["direction", "kind"],
            registry=r,
        )
        self.auth_failures = Counter(
            p + "s2s_auth_failures",
            "Server-to-server requests refused for bad or missing authentication",
            registry=r,
        )
        self.member_auth_failures = Counter(
            p + "auth_failures",
            "Member requests refused by digest authentication or access policy, by reason "
            "(malformed, algorithm, bad_nonce, bad_response, unknown_user, stale_nonce, "
            "replayed, uri_mismatch, not_allowed, from_mismatch, not_member, locked_out)",
            ["reason"],
            registry=r,
        )
        self.unmoved = Counter(
            p + "unmoved_members",
            "Members still here when a graceful exit (SIGTERM) ran out of time: "
            "their sessions ended with BYE instead of moving to another server",
            ["group"],
            registry=r,
        )
        self.delivery_failures = Counter(
            p + "delivery_failures",
            "MESSAGE deliveries that failed (error response or timeout)",
            registry=r,
        )

        # Transport (RFC 3261 18) and its bounds.
        self.tcp_connections = Gauge(
            p + "tcp_connections", "TCP connections open (inbound and outbound)", registry=r
        )
        self.tls_connections = Gauge(
            p + "tls_connections", "TLS connections open (inbound and outbound)", registry=r
        )
        self.ws_connections = Gauge(
            p + "ws_connections", "WebSocket connections open (ws and wss)", registry=r
        )
        self.tcp_refused = Counter(
            p + "tcp_refused",
            "TCP connections refused for a limit (total, per_source)",
            ["reason"],
            registry=r,
        )
        self.tcp_closed = Counter(
            p + "tcp_closed",
            "TCP connections closed, by reason (peer, idle, half_sent, parse_error, "
            "write_buffer, connect_failed, handshake (TLS), shutdown)",
            ["reason"],
            registry=r,
        )
        self.transport_errors = Counter(
            p + "transport_errors",
            "Transactions ended because the transport could not send (RFC 3261 17.1.4), "
            "by side (client, server)",
            ["side"],
            registry=r,
        )
        self.udp_fallbacks = Counter(
            p + "udp_fallbacks",
            "Requests sent over TCP for their size and re-sent over UDP when the "
            "connection failed (RFC 3261 18.1.1)",
            registry=r,
        )
        self.members_removed = Counter(
            p + "members_removed",
            "Members whose session this server ended or saw end, by reason",
            ["reason"],
            registry=r,
        )

        # Crash recovery (replicas.py, recovery.py, rejoin.py).
        self.replicas_held = Gauge(
            p + "replicas_held",
            "Dialogs of other servers' members this server holds replicas of",
            registry=r,
        )
        self.orphaned = Counter(
            p + "orphaned_members",
            "Members of a dead server this server took charge of, by how the death "
            "was noticed (restarted, silent)",
            ["reason"],
            registry=r,
        )
        self.rejoins = Counter(
            p + "rejoins",
            "Orphaned members brought back (rejoined) or lost (failed), by method "
            "(replaces: INVITE with Replaces, reinvite: re-INVITE in the dead dialog)",
            ["method", "outcome"],
            registry=r,
        )
        self.over_capacity = Counter(
            p + "rejoined_over_capacity",
            "Orphaned members brought back into a shard already at its capacity (taken "
            "anyway rather than lost), by group",
            ["group"],
            registry=r,
        )
        self.unrecovered = Counter(
            p + "unrecovered_members",
            "Members a restarted server had that nobody brought back (it and the holder "
            "of their replicas died together, or the group had no holder), by group",
            ["group"],
            registry=r,
        )
        self.replayed = Counter(
            p + "replayed_deliveries",
            "Group messages sent again to members brought back after a crash: those "
            "since their dead server's last sign of life (some may be duplicates)",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def sample_loop_lag(gauge: Gauge, interval: float = 0.5) -> None:
    """Run forever: measure how late a sleep of `interval` wakes up."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            gauge.set(max(0.0, loop.time() - start - interval))
