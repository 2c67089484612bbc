"""What member security costs sip-node: digest-authenticated MESSAGE and TLS vs plain.

    .venv/bin/python bench/security_bench.py [--quick] [--out bench/results/security.md]

One sip-node (role main) with member credentials and a TLS certificate (made
for the run with the openssl CLI) serves two groups: `open` (policy open) and
`auth` (policy authenticated, MD5, because sipp 3.6 computes MD5 only). The
load's sender joins each group once, then sends out-of-dialog group MESSAGEs:

1. UDP, sipp: plain MESSAGE to `open` versus digest MESSAGE to `auth` (each
   MESSAGE challenged with 401 and sent again with credentials, the path of an
   out-of-dialog MESSAGE from a phone: two transactions, a nonce, an HMAC, a
   replay-table entry, a hash). Rate search taking turns (as sip_bench.py), then
   a fixed-rate run each for server CPU per MESSAGE.
2. TCP versus TLS, one connection each, streamload.py (sipp has no TLS here): a
   fixed rate, server CPU per MESSAGE and latency.

Everything listens on 127.0.0.1; every loop is bounded in count and time; all
started processes are killed on exit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sipbench import cli, sipnode, sipp
from sipbench.procs import BenchError, CpuMeter, Procs, exit_on_sigterm, free_port
from sipbench.report import machine_lines

HOST = "127.0.0.1"
USER, PASSWORD = "sender", "bench-password-31"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
STREAMLOAD = Path(__file__).resolve().parent / "sipbench" / "streamload.py"


@dataclass(frozen=True)
class Cost:
    """One fixed-rate run: what the server spent per answered MESSAGE."""

    name: str
    rate: int
    ok: int
    sent: int
    seconds: float
    server_cpu: float  # % of one core
    p50_ms: float
    p99_ms: float

    @property
    def cpu_us_per_message(self) -> float:
        return self.server_cpu / 100 * self.seconds / max(self.ok, 1) * 1e6


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.bench_parser(__doc__, "security.md")
    p.add_argument("--rate", type=int, default=1000, help="fixed-rate runs: MESSAGE/s")
    p.add_argument("--seconds", type=float, default=5.0, help="length of one fixed-rate run")
    p.add_argument("--reps", type=int, default=3, help="fixed-rate runs per variant")
    args = cli.parse(p, argv)
    if args.quick:
        args.seconds, args.reps, args.step_seconds, args.budget = 2.0, 1, 1.5, 15.0
    if not 1 <= args.reps <= 20 or not 50 <= args.rate <= 20000:
        p.error("--reps must be within 1..20 and --rate within 50..20000")
    return args


def make_certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for HOST (its own trust anchor), made for this run."""
    crt, key = workdir / "tls.crt", workdir / "tls.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "1",
            "-subj", "/CN=sipfleet bench", "-addext", f"subjectAltName=IP:{HOST}",
        ],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return crt, key


def credentials(workdir: Path) -> Path:
    """realm -> user -> algorithm -> HA1 (docs/security.md) for the load's sender."""
    a1 = f"{USER}:{sipnode.DOMAIN}:{PASSWORD}".encode()
    entry = {"MD5": hashlib.md5(a1).hexdigest(), "SHA-256": hashlib.sha256(a1).hexdigest()}
    path = workdir / "credentials.json"
    path.write_text(json.dumps({sipnode.DOMAIN: {USER: entry}}))
    return path


def auth_options(uri: str) -> tuple[str, ...]:
    """sipp's digest options; its digest `uri` must be the Request-URI (sipp would put
    the remote address there, which the server refuses with 400)."""
    return ("-au", USER, "-ap", PASSWORD, "-auth_uri", uri.removeprefix("sip:"))  # it adds sip:


def join(node: sipnode.SipNode, group: str, workdir: Path, auth: bool) -> None:
    """The sender joins `group` once with sipp (member_join.xml) over UDP."""
    extra = auth_options(node.group_uri(group)) if auth else ()
    target = sipp.Target(
        f"join-{group}", HOST, node.sip_port, node.group_uri(group),
        f"sip:{USER}@{sipnode.DOMAIN}", node.proc.pid, SCENARIOS / "member_join.xml", extra,
    )  # fmt: skip
    step = sipp.run_step(target, 1, 1.0, workdir)
    if step.ok != 1:
        raise BenchError(f"the sender could not join {group}: see {workdir}/join-{group}-1")


def stream_cost(
    name: str, node: sipnode.SipNode, port: int, ca: Path | None, args: argparse.Namespace
) -> Cost:
    """One streamload.py run over TCP (ca None) or TLS, with the server's CPU."""
    meter = CpuMeter({"server": node.proc.pid})
    done = subprocess.run(
        [
            sys.executable, str(STREAMLOAD), "--host", HOST, "--port", str(port),
            "--tls-ca", str(ca or ""), "--group", node.group_uri("open"),
            "--from", f"sip:{USER}@{sipnode.DOMAIN}", "--rate", str(args.rate),
            "--seconds", str(args.seconds),
        ],
        capture_output=True, timeout=args.seconds + 30, check=False,
    )  # fmt: skip
    cpu = meter.percent()["server"]
    if done.returncode != 0:
        raise BenchError(f"streamload ({name}) failed: {done.stderr.decode()[-800:]}")
    r = json.loads(done.stdout)
    return Cost(name, args.rate, r["ok"], r["sent"], r["seconds"], cpu, r["p50_ms"], r["p99_ms"])


def sipp_cost(target: sipp.Target, args: argparse.Namespace, workdir: Path) -> Cost:
    s = sipp.run_step(target, args.rate, args.seconds, workdir / f"rep{time.monotonic_ns()}")
    return Cost(target.name, args.rate, s.ok, s.sent, s.seconds, s.server_cpu, s.p(50), s.p(99))


def _median(costs: list[Cost]) -> Cost:
    return sorted(costs, key=lambda c: c.cpu_us_per_message)[len(costs) // 2]


def render(settings: list[str], searches: dict[str, sipp.RateSearch], costs: list[Cost]) -> str:
    lines = ["# sip-node: cost of digest authentication and TLS", ""]
    lines += [f"- {s}" for s in settings] + [""]
    lines += ["## Highest sustained MESSAGE rate over UDP (sipp, < 1% failures)", ""]
    lines += [
        "| variant | best sustained/s | p50 ms | p99 ms | server CPU % |",
        "|---|---|---|---|---|",
    ]
    for name, search in searches.items():
        best = search.good
        if best is None:
            lines.append(f"| {name} | none passed | | | |")
        else:
            lines.append(
                f"| {name} | {best.achieved:,.0f} | {best.p(50):.0f} | {best.p(99):.0f} | "
                f"{best.server_cpu:.0f} |"
            )
    lines += ["", "## Server CPU per MESSAGE at a fixed rate (median run)", ""]
    lines += [
        "| variant | offered/s | answered | server CPU % | CPU us/MESSAGE | vs plain | "
        "p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_name: dict[str, list[Cost]] = {}
    for cost in costs:
        by_name.setdefault(cost.name, []).append(cost)
    base = {"udp digest": "udp plain", "tls": "tcp"}
    for name, runs in by_name.items():
        c = _median(runs)
        ref = by_name.get(base.get(name, name))
        ratio = c.cpu_us_per_message / _median(ref).cpu_us_per_message if ref else 1.0
        lines.append(
            f"| {name} | {c.rate} | {c.ok}/{c.sent} | {c.server_cpu:.0f} | "
            f"{c.cpu_us_per_message:.0f} | x{ratio:.2f} | {c.p50_ms:.2f} | {c.p99_ms:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    settings = [
        *machine_lines(),
        "sip-node: one process, role main (uvloop), per-source rate limit out of reach, "
        "member credentials loaded, TLS listener with a P-256 certificate",
        "UDP runs: sipp 3.6 (uac_message.xml / uac_message_auth.xml, MD5 digest: one 401 "
        "and one authenticated MESSAGE per answered MESSAGE)",
        "TCP/TLS runs: bench/sipbench/streamload.py, one connection, the same MESSAGE, "
        "out of dialog; TLS 1.3 on loopback",
        f"Fixed-rate runs: {args.rate}/s for {args.seconds:.1f} s, {args.reps} each, variants "
        "taking turns; CPU us/MESSAGE = server CPU seconds / answered MESSAGEs",
    ]
    searches: dict[str, sipp.RateSearch] = {}
    costs: list[Cost] = []
    if args.sip_node_dir is not None:
        settings.append(f"sip-node code from {args.sip_node_dir} (not the installed copy)")
    t0 = time.monotonic()
    try:
        with cli.workdir("secbench-", args.keep) as workdir, Procs(workdir) as procs:
            crt, key = make_certificate(workdir)
            tls_port = free_port(HOST, kind=socket.SOCK_STREAM)
            node = sipnode.start(
                procs, HOST, code_dir=args.sip_node_dir,
                extra=[
                    "--credentials-file", str(credentials(workdir)), "--default-policy", "open",
                    "--tls-cert-file", str(crt), "--tls-key-file", str(key),
                    "--tls-port", str(tls_port),
                ],
            )  # fmt: skip
            node.admin("POST", "/v1/shards", {"group": node.group_uri("open"), "capacity": 10})
            node.admin(
                "POST",
                "/v1/shards",
                {
                    "group": node.group_uri("auth"),
                    "capacity": 10,
                    "access": {"policy": "authenticated", "algorithms": ["MD5"]},
                },
            )
            join(node, "open", workdir, auth=False)
            join(node, "auth", workdir, auth=True)
            sender = f"sip:{USER}@{sipnode.DOMAIN}"
            plain = sipp.Target(
                "udp plain", HOST, node.sip_port, node.group_uri("open"), sender, node.proc.pid
            )
            digest = sipp.Target(
                "udp digest", HOST, node.sip_port, node.group_uri("auth"), sender,
                node.proc.pid, SCENARIOS / "uac_message_auth.xml",
                auth_options(node.group_uri("auth")),
            )  # fmt: skip

            def stepper(target: sipp.Target) -> Callable[[int], sipp.Step]:
                def step(rate: int) -> sipp.Step:
                    s = sipp.run_step(target, rate, args.step_seconds, workdir)
                    print(
                        f"  {target.name:<10} offered {rate:>6,}/s achieved {s.achieved:>8,.0f}/s "
                        f"failed {s.failed:>5} p99 {s.p(99):.0f} ms CPU {s.server_cpu:.0f}%",
                        flush=True,
                    )
                    return s

                return step

            searches = {t.name: sipp.RateSearch(1000, 64000) for t in (plain, digest)}
            print("[rate search] udp plain vs udp digest", flush=True)
            sipp.search_together(
                {t.name: (searches[t.name], stepper(t)) for t in (plain, digest)},
                args.budget * 2,
            )
            print(f"[fixed rate] {args.rate}/s, {args.reps} runs per variant", flush=True)
            for _ in range(args.reps):
                costs.append(sipp_cost(plain, args, workdir))
                costs.append(sipp_cost(digest, args, workdir))
                costs.append(stream_cost("tcp", node, node.sip_port, None, args))
                costs.append(stream_cost("tls", node, tls_port, crt, args))
                for c in costs[-4:]:
                    print(
                        f"  {c.name:<10} {c.ok}/{c.sent} CPU {c.server_cpu:.0f}% "
                        f"{c.cpu_us_per_message:.0f} us/MESSAGE p99 {c.p99_ms:.1f} ms",
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted: processes stopped", file=sys.stderr)
        return 130
    settings.append(f"Total run time {time.monotonic() - t0:.0f} s")
    cli.write_report(render(settings, searches, costs), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
