"""MESSAGE load over one TCP or TLS connection (sipp 3.6 from Debian has no TLS).

    python streamload.py --host H --port P [--tls-ca CERT] --group URI --from URI \
        --rate R --seconds S

Joins the group once (INVITE, ACK) on its connection, then sends out-of-dialog
MESSAGEs from the member at R per second for S seconds (in 10 ms batches) and
waits up to 5 s for the last answers. Prints one JSON line: sent, ok (200s),
other (any other final answer), seconds (first send to last answer), p50_ms,
p99_ms. The same program drives the TCP and the TLS run, so their difference is
the server's TLS cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import ssl
import time

from sipfleet.node.sip import SipResponse, StreamFramer

BATCH_SECONDS = 0.01
DRAIN_SECONDS = 5.0


def _request(method: str, args: argparse.Namespace, local: str, call_id: str, cseq: int) -> bytes:
    body = f"load {call_id}" if method == "MESSAGE" else ""
    kind = "Content-Type: text/plain\r\n" if body else ""
    transport = "TLS" if args.tls_ca else "TCP"
    return (
        f"{method} {args.group} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {local};branch=z9hG4bK{secrets.token_hex(8)}\r\n"
        f"Max-Forwards: 70\r\nFrom: <{args.from_}>;tag={call_id[:8]}\r\nTo: <{args.group}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:sender@{local}>\r\n"
        f"{kind}Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


async def run(args: argparse.Namespace) -> dict[str, float]:
    context = None
    if args.tls_ca:
        context = ssl.create_default_context(cafile=args.tls_ca)
    reader, writer = await asyncio.open_connection(
        args.host, args.port, ssl=context, server_hostname=args.host if context else None
    )
    host, port = writer.get_extra_info("sockname")[:2]
    local = f"{host}:{port}"
    framer = StreamFramer()
    sent_at: dict[str, float] = {}
    rtts: list[float] = []
    other = 0
    joined = asyncio.get_running_loop().create_future()
    last_answer = 0.0

    async def read() -> None:
        nonlocal other, last_answer
        while data := await reader.read(1 << 16):
            for message in framer.feed(data):
                if not isinstance(message, SipResponse) or message.status < 200:
                    continue
                call_id = message.call_id or ""
                if message.cseq and message.cseq[1] == "INVITE":
                    if not joined.done():
                        joined.set_result(message)
                    continue
                started = sent_at.pop(call_id, None)
                if started is None:
                    continue
                last_answer = time.perf_counter()
                if message.status == 200:
                    rtts.append((last_answer - started) * 1000)
                else:
                    other += 1

    reading = asyncio.create_task(read())
    join_id = secrets.token_hex(10)
    writer.write(_request("INVITE", args, local, join_id, 1))
    answer = await asyncio.wait_for(joined, 10)
    if answer.status != 200:
        raise SystemExit(f"join answered {answer.status}")
    ack = _request("ACK", args, local, join_id, 1).replace(
        b"To: <" + args.group.encode() + b">",
        b"To: <" + args.group.encode() + b">;tag=" + (answer.to_tag or "").encode(),
    )
    writer.write(ack)

    per_batch = max(1, round(args.rate * BATCH_SECONDS))
    batches = max(1, round(args.seconds / BATCH_SECONDS))
    start = time.perf_counter()
    sent = 0
    for index in range(batches):
        now = time.perf_counter()
        for _ in range(per_batch):
            call_id = secrets.token_hex(10)
            sent_at[call_id] = now
            writer.write(_request("MESSAGE", args, local, call_id, 1))
        sent += per_batch
        await writer.drain()
        delay = start + (index + 1) * BATCH_SECONDS - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    deadline = time.perf_counter() + DRAIN_SECONDS
    while sent_at and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    reading.cancel()
    writer.close()
    rtts.sort()

    def pct(q: float) -> float:
        return rtts[min(len(rtts) - 1, int(q / 100 * len(rtts)))] if rtts else float("nan")

    return {
        "sent": sent,
        "ok": len(rtts),
        "other": other,
        "seconds": (last_answer or time.perf_counter()) - start,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls-ca", default="", help="CA file: connect over TLS")
    p.add_argument("--group", required=True)
    p.add_argument("--from", dest="from_", required=True)
    p.add_argument("--rate", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    args = p.parse_args()
    if not 1 <= args.rate <= 50000 or not 0 < args.seconds <= 60:
        p.error("--rate must be within 1..50000 and --seconds within 0..60")
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
