"""`sipfleet`: the project's command line.

sipfleet dev up|down|status --state-dir DIR   the local single-node cluster (root)
sipfleet dev images                          the node and operator images, without Docker
sipfleet demo [--state-dir DIR]               the fleet scaling out and back in (sipfleet.demo)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sipfleet.devcluster import imagebuild
from sipfleet.devcluster.binaries import BinariesError, source_checkout
from sipfleet.devcluster.controlplane import ControlPlane, DevClusterError
from sipfleet.devcluster.hostnet import HostNetError
from sipfleet.devcluster.pki import PKIError

DEFAULT_STATE = Path(".state/dev")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sipfleet", description="sipfleet command line")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="the local single-node Kubernetes cluster")
    dev_commands = dev.add_subparsers(dest="action", required=True)
    for action, text in (
        (
            "up",
            "start the control plane and the node (containerd, kubelet, kube-proxy, CoreDNS)",
        ),
        ("down", "stop what `up` started for this state dir"),
        ("status", "show each component's state and the API's readiness"),
    ):
        sub = dev_commands.add_parser(action, help=text)
        sub.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
        if action == "up":
            sub.add_argument(
                "--api-port", type=int, default=None, help="API server port (default: a free one)"
            )

    dev_commands.add_parser(
        "images",
        help="build the node and operator images without Docker (cached; `up` imports them)",
    )

    demo = commands.add_parser(
        "demo", help="run the operator and members on a local cluster; watch the fleet scale"
    )
    demo.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    demo.add_argument(
        "--duration", type=float, default=120.0, help="length of the story in seconds (>= 45)"
    )
    demo.add_argument("--members", type=int, default=40, help="members that join (1-200)")
    demo.add_argument("--no-plot", action="store_true", help="skip the PNG timeline")
    demo.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="overall limit in seconds, setup included (default: duration + 150)",
    )
    return parser


def _build_images() -> int:
    """`sipfleet dev images`: build (or find cached) the project's images; 2 if it cannot."""
    repo = source_checkout()
    if repo is None:
        print("sipfleet: the images are built from a sipfleet checkout", file=sys.stderr)
        return 2
    try:
        archive, tags = imagebuild.build(repo)
    except imagebuild.ImageBuildError as err:
        print(f"sipfleet: {err}", file=sys.stderr)
        return 2
    print(f"{', '.join(tags)}: {archive}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from sipfleet.demo.kubeside import DemoError
            from sipfleet.demo.run import run_demo

            try:
                return run_demo(
                    args.state_dir,
                    duration=args.duration,
                    members=args.members,
                    plot=not args.no_plot,
                    timeout=args.timeout,
                )
            except DemoError as err:
                print(f"sipfleet demo: {err}", file=sys.stderr)
                return 1
        if args.action == "images":
            return _build_images()
        plane = ControlPlane(args.state_dir)
        if args.action == "up":
            plane.up(api_port=args.api_port)
            return 0
        if args.action == "down":
            plane.down()
            return 0
        return 0 if plane.status() else 1
    except (BinariesError, DevClusterError, HostNetError, PKIError) as err:
        print(f"sipfleet: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 141  # output piped into e.g. `head`, which has exited
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"sipfleet: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
