"""`python -m sipfleet.devcluster.kubelet`: run the local kubelet until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from sipfleet.devcluster.kubeconfig import read_cert_kubeconfig
from sipfleet.devcluster.kubelet.api import Api
from sipfleet.devcluster.kubelet.kubelet import Kubelet


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    assert current is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, current.cancel)
    async with Api(read_cert_kubeconfig(args.kubeconfig)) as api:
        kubelet = Kubelet(api, args.node_name, args.state_dir)
        try:
            await kubelet.run()
        except asyncio.CancelledError:
            logging.getLogger(__name__).info("stopping: all pod processes are stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="sipfleet-kubelet", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node-name", default="sipfleet-local")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
