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
from sipfleet.devcluster.kubelet.server import server_ssl


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    assert current is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, current.cancel)
    async with Api(read_cert_kubeconfig(args.kubeconfig)) as api:
        tls = server_ssl(args.tls_cert_file, args.tls_private_key_file, args.client_ca_file)
        kubelet = Kubelet(api, args.node_name, args.state_dir, args.port, tls)
        try:
            await kubelet.run()
        except asyncio.CancelledError:
            logging.getLogger(__name__).info("stopping: all pod processes are stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="sipfleet-kubelet", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node-name", default="sipfleet-local")
    parser.add_argument("--port", type=int, required=True, help="HTTPS port for `kubectl logs`")
    parser.add_argument("--tls-cert-file", type=Path, required=True)
    parser.add_argument("--tls-private-key-file", type=Path, required=True)
    parser.add_argument("--client-ca-file", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
