"""sipfleet-node: the SIP group server of a sipfleet (role main or node).

Modules, one job each:
    cli, config       command line / environment -> Config; runner: process lifecycle
    admin_api, openapi, admin_client   the admin HTTP API, its OpenAPI document, its client
    metrics           Prometheus collectors (one registry per server) + event-loop lag sampler
    transport         asyncio UDP endpoint and TCP connections (inbound and pooled outbound)
    stack, timers     rate limit -> parse -> validate -> the core's TransactionLayer, one timer
    ratelimit         per-source token buckets (bounded table)
    node              the shell: performs the group logic's actions; the admin Control
    group             pure group core: shards, members, join/leave, who gets a group
                      MESSAGE and how it is presented; rosters through distribution
    distribution      pure: the distribution tree and the rosters that travel it
    focus             members (dialogs of the SIP core) and shards
    takeover          refer-to-server's target side; its pure ring timer (Ringing)
    clock             drives a pure core's timers from one asyncio timer
    redirect          join-or-302 decision with in-flight reservations
    routes            the routing table and the tree derived from it
    subscriptions     SUBSCRIBE Event: conference (RFC 4575)
    transfers         REFER (RFC 3515/4488) and REFER-to-server with Replaces (RFC 3891)
    s2s, s2s_auth     signed server-to-server requests (HMAC-SHA256, timestamp, nonce)
    sdp               SDP offer/answer (RFC 3264), one MediaSession per dialog
    presentation      how a group message shows its sender (cpim, display name, prefix)
    sip/              the sans-I/O protocol core

Operator-facing facts:
    Shard URI: a server names its shard of group `sip:<user>@<domain>`
        `sip:<user>-<server name>@<host>:<port>` (POST /v1/shards returns it): the
        advertised address and UDP port (--advertise-*), else the listen ip and sip port.
        A server answers INVITEs to that URI and to the group URI itself
        (`sip:<user>@...`, matched on the user part).
    Member counts: GET /v1/state -> shards[].members (and member_uris), or the gauge
        sipfleet_node_members{group}. Capacity: sipfleet_node_capacity{group}.
    Routes: PUT /v1/routes must list, for each group, every server hosting it, the
        same table on every one of them; entry 0 is the root. A server that hosts a
        group but is missing from its routes serves its own members only.
    Redirect: a join goes to the local shard while it has room and neither the shard
        nor the server drains; else 302 to the active route entry with the most free
        room (the smaller of the pushed `free` and the free room the server last
        reported over the tree, minus 302s still in flight for 5 s); else 480 Group
        Full with Retry-After: 30, or, from a draining (stopping) server, 503 Service
        Unavailable with Retry-After: 5 (RFC 3261 21.5.4).
    Group MESSAGE: in dialog, or out of dialog to the group URI from a member's AOR
        (From URI); anyone else gets 403. It goes to the group's root, then down the
        tree; each server sends it to its members (except the sender) as an in-dialog
        MESSAGE with the header `X-Sipfleet-Sender: <sender AOR>`, its body shown as
        the group's sender display says (POST /v1/shards `sender_display`, from
        SipConference.spec.senderDisplay), else --sender-display (default auto:
        message/cpim to members that listed it in Accept, else `alice: ` before a
        text/plain body; docs/media-and-messages.md).
    Media: the focus carries none. It answers an SDP offer with one codec per RTP
        stream, a=inactive (RFC 3264 6), and offers in its 200 to an INVITE without
        SDP, taking the answer from the ACK (RFC 3264 5).
    Server-to-server: SIP over TCP, MESSAGE (tree traffic: kind group|roster), REFER
        and NOTIFY (refer-to-server), each signed with `X-Sipfleet-Auth:
        ts=..;nonce=..;mac=HMAC-SHA256(token, ts, nonce, method, Request-URI, every
        header but Via/Max-Forwards/Content-Length, body)`; refused with 403 if
        missing, wrong, older than 30 s or replayed. Peer server IPs (from the
        routes) are not rate limited.
    Rosters: after any membership change (coalesced for 50 ms) a server sends its
        member list up the tree; every server thus knows the whole group (conference
        state, redirect room, transfer confirmation).
    Transfers: POST /v1/transfers moves members at `rate` per second. A member counts
        as moved (and gets a BYE here) once the target's roster lists it, or 2 s after
        a 2xx sipfrag NOTIFY; failed on a REFER error, a non-2xx sipfrag or after 32 s.
        Messages sent meanwhile are still delivered here and counted in
        sipfleet_node_duplicate_deliveries_total (an upper bound on duplicates).
    Drain: POST /v1/drain stops joins (302 elsewhere, capacity 0 in rosters) until the
        process ends; members stay until transferred. SIGTERM does the same, then exits.
    Limits: requests over UDP larger than 1300 bytes are sent over TCP instead
        (RFC 3261 18.1.1); route sets (Record-Route) of members are not used.
"""
