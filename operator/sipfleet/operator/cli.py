"""``sipfleet-operator``: run the sipfleet kopf operator.

Every option can also come from an environment variable (named in --help);
the command line wins. With ``--peering NAME`` several replicas may run at
once: they compete for the coordination.k8s.io Lease NAME and only the holder
runs the handlers; the others wait. A leader that loses its Lease exits with
status 3 so that its Pod restarts as a standby.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import kopf
import kubernetes
from sipfleet.operator import health, metrics
from sipfleet.operator.handlers import register
from sipfleet.operator.kube import Kube, api_client, watch_streams
from sipfleet.operator.leader import LeaderElector, default_identity
from sipfleet.operator.runtime import Runtime

EXIT_LOST_LEASE = 3
ENV_PREFIX = "SIPFLEET_OPERATOR_"


@dataclass(frozen=True)
class Options:
    namespaces: tuple[str, ...]
    all_namespaces: bool
    interval: float
    peering: str | None
    lease_namespace: str
    lease_seconds: int
    identity: str
    metrics_port: int
    metrics_addr: str
    liveness: str | None
    kubeconfig: str | None
    verbose: bool


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name, default)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{value} must be > 0 and <= 3600 seconds")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0..65535 (0 disables)")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sipfleet-operator",
        description="Run the sipfleet operator: it reconciles SipFleet and SipConference "
        "objects (group sipfleet.io) into SIP server Pods, shards, routes and transfers.",
        epilog="Environment variables use the prefix SIPFLEET_OPERATOR_ (shown per option); "
        "KUBECONFIG selects the cluster when --kubeconfig is absent, else the in-cluster "
        "ServiceAccount is used.",
    )
    scope = p.add_mutually_exclusive_group()
    ns_env = _env("NAMESPACES", "")
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        default=None,
        metavar="NS",
        help="watch this namespace (repeatable; globs like 'team-*' allowed) "
        "[env NAMESPACES, comma-separated]",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        default=_env("ALL_NAMESPACES", "") in ("1", "true", "yes"),
        help="watch every namespace (cluster-wide) [env ALL_NAMESPACES=1]",
    )
    p.add_argument(
        "--interval",
        type=_positive_float,
        default=_env("INTERVAL", "2"),
        metavar="SECONDS",
        help="control-loop period; a conference's spec.scaling.intervalSeconds may only "
        "slow it down [env INTERVAL, default 2]",
    )
    p.add_argument(
        "--peering",
        "--leader-lease",
        dest="peering",
        default=_env("PEERING"),
        metavar="NAME",
        help="run highly available: replicas compete for the coordination.k8s.io Lease "
        "NAME and only its holder acts; absent = standalone [env PEERING]",
    )
    p.add_argument(
        "--lease-namespace",
        default=_env("LEASE_NAMESPACE") or os.environ.get("POD_NAMESPACE"),
        metavar="NS",
        help="namespace of the Lease [env LEASE_NAMESPACE or POD_NAMESPACE; default: the "
        "first --namespace, else 'default']",
    )
    p.add_argument(
        "--lease-seconds",
        type=int,
        default=_env("LEASE_SECONDS", "15"),
        metavar="SECONDS",
        help="how long a silent leader keeps the Lease before a standby takes over "
        "[env LEASE_SECONDS, default 15]",
    )
    p.add_argument(
        "--identity",
        default=_env("IDENTITY") or os.environ.get("POD_NAME") or default_identity(),
        help="this replica's name in the Lease [env IDENTITY or POD_NAME; default host-pid-random]",
    )
    p.add_argument(
        "--metrics-port",
        type=_port,
        default=_env("METRICS_PORT", "0"),
        metavar="PORT",
        help="serve sipfleet_operator_* metrics on this port; 0 = off [env METRICS_PORT]",
    )
    p.add_argument(
        "--metrics-addr",
        default=_env("METRICS_ADDR", "127.0.0.1"),
        metavar="ADDR",
        help="address for the metrics server [env METRICS_ADDR, default 127.0.0.1]",
    )
    p.add_argument(
        "--liveness",
        default=_env("LIVENESS"),
        metavar="URL",
        help="serve liveness at this URL, e.g. http://127.0.0.1:8081/healthz, on every replica "
        "(leader or standby): 200 while the event loop turns and the Lease loop completes "
        "rounds, else 503 naming the stale one [env LIVENESS]",
    )
    p.add_argument(
        "--kubeconfig",
        default=None,
        metavar="FILE",
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(env_namespaces=[n.strip() for n in (ns_env or "").split(",") if n.strip()])
    return p


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)
    namespaces = tuple(args.namespaces or args.env_namespaces)
    if not namespaces and not args.all_namespaces:
        parser.error("choose the scope: --namespace NS (repeatable) or --all-namespaces")
    if args.all_namespaces and namespaces:
        parser.error("--all-namespaces and --namespace exclude each other")
    if args.lease_seconds < 5:
        parser.error(f"--lease-seconds {args.lease_seconds} is too short; use 5 or more")
    if args.liveness:
        try:
            health.parse_endpoint(args.liveness)
        except ValueError as exc:
            parser.error(str(exc))
    lease_ns = args.lease_namespace or (namespaces[0] if namespaces else "default")
    return Options(
        namespaces=namespaces,
        all_namespaces=args.all_namespaces,
        interval=args.interval,
        peering=args.peering,
        lease_namespace=lease_ns,
        lease_seconds=args.lease_seconds,
        identity=args.identity,
        metrics_port=args.metrics_port,
        metrics_addr=args.metrics_addr,
        liveness=args.liveness,
        kubeconfig=args.kubeconfig,
        verbose=args.verbose,
    )


API_RETRY_BACKOFFS: tuple[float, ...] = (0.5, 1.0, 1.0) + (2.0,) * 40
"""Seconds between kopf's retries of a failed API request (connection error, 5xx):
never more than 2 s apart, for about 80 s. kopf's default (1, 1, 2, 3, 5, 8, 13,
21) leaves up to 21 s between the API server coming back after an outage and the
operator noticing (measured: 20.3 s after a 30 s outage, bench/disruption.py (g));
a retry every 2 s is a few requests per second at most."""


def kopf_settings() -> kopf.OperatorSettings:
    """kopf settings: no kopf peering (the Lease does that), state kept in annotations,
    failed API requests retried at most 2 s apart (`API_RETRY_BACKOFFS`).

    Annotations, not ``status.kopf``: the CRDs have structural schemas that
    would prune unknown status fields.
    """
    s = kopf.OperatorSettings()
    s.peering.standalone = True
    s.persistence.finalizer = "sipfleet.io/finalizer"
    s.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.sipfleet.io")
    s.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kopf.sipfleet.io", key="last-handled-configuration"
    )
    s.posting.level = logging.WARNING  # Events only for problems; steps post their own
    s.watching.server_timeout = 60
    s.networking.request_timeout = 30
    s.networking.error_backoffs = API_RETRY_BACKOFFS
    return s


def lease_stale_seconds(lease_seconds: int) -> float:
    """How long the Lease loop may go without a round before liveness fails.

    Rounds come every lease/5 s; two leases without one means a call hangs.
    """
    return max(10.0, 2.0 * lease_seconds)


async def run(opts: Options) -> int:
    """Run until stopped; the exit status for the process."""
    beating = asyncio.create_task(health.beat_loop())
    try:
        return await _run(opts)
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating


async def _run(opts: Options) -> int:
    kube = Kube(api_client(opts.kubeconfig))
    try:
        return await _act(opts, kube)
    finally:
        kube.close()


async def _act(opts: Options, kube: Kube) -> int:
    registry = kopf.OperatorRegistry()
    lost = asyncio.Event()
    elector: LeaderElector | None = None
    if opts.peering:
        elector = LeaderElector(
            kube,
            opts.lease_namespace,
            opts.peering,
            opts.identity,
            lease_seconds=opts.lease_seconds,
            retry_seconds=max(1.0, opts.lease_seconds / 5),
            heartbeat=lambda: health.HEARTBEATS.beat("lease"),
        )
        health.HEARTBEATS.expect("lease", lease_stale_seconds(opts.lease_seconds))
        await elector.acquire()
    metrics.LEADER.set(1)
    async with Runtime.open(kube, interval=opts.interval, kubeconfig=opts.kubeconfig) as rt:
        register(registry, rt, streams=watch_streams(len(opts.namespaces)))
        # A lost Lease cancels kopf. (kopf's stop_flag would do too, but its waiter
        # task then holds up every SIGTERM exit by kopf's 5 s grace for hung tasks.)
        acting = asyncio.create_task(
            kopf.operator(
                registry=registry,
                settings=kopf_settings(),
                clusterwide=opts.all_namespaces,
                namespaces=list(opts.namespaces),
                standalone=True,
            )
        )

        def on_lost() -> None:
            lost.set()
            acting.cancel()

        holder = asyncio.create_task(elector.hold(on_lost=on_lost)) if elector else None
        try:
            await acting
        except asyncio.CancelledError:
            if not lost.is_set():
                raise
        finally:
            metrics.LEADER.set(0)
            if holder is not None:
                holder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await holder
    if elector is not None:
        if lost.is_set():
            return EXIT_LOST_LEASE
        await elector.release()
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    opts = parse_options(argv)
    logging.basicConfig(
        level=logging.DEBUG if opts.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not opts.verbose:  # per-tick "Timer succeeded" and per-retry urllib3 lines are noise
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    if opts.metrics_port:
        try:
            metrics.serve(opts.metrics_port, opts.metrics_addr)
        except OSError as exc:
            sys.exit(
                f"sipfleet-operator: cannot serve metrics on {opts.metrics_addr}:"
                f"{opts.metrics_port}: {exc.strerror}; pick another --metrics-port"
            )
    if opts.liveness:
        try:
            health.serve(opts.liveness)
        except OSError as exc:
            sys.exit(
                f"sipfleet-operator: cannot serve liveness at {opts.liveness}: {exc.strerror}; "
                "pick another --liveness port"
            )
    try:
        code = asyncio.run(run(opts))
    except KeyboardInterrupt:
        code = 130
    except kubernetes.config.ConfigException as exc:
        sys.exit(
            f"sipfleet-operator: no Kubernetes credentials ({exc}); pass --kubeconfig FILE, "
            "set KUBECONFIG, or run in a Pod with a ServiceAccount"
        )
    sys.exit(code)
