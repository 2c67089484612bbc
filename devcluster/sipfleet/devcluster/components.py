"""The command lines of the control-plane components, and kube-proxy's RBAC.

Everything listens on 127.0.0.1 only, except the API server, which listens on
the node IP (pods reach it through the `kubernetes` Service; see hostnet.py).
"""

from __future__ import annotations

from sipfleet.devcluster import hostnet
from sipfleet.devcluster.binaries import Binaries
from sipfleet.devcluster.layout import Layout, Ports
from sipfleet.devcluster.pki import PKI

NODE_NAME = "sipfleet-local"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# kube-proxy authenticates as system:kube-proxy; the built-in role is node-proxier.
KUBE_PROXY_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "sipfleet:kube-proxy"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:node-proxier"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:kube-proxy"}
"""


def etcd_argv(bins: Binaries, layout: Layout, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(bins.etcd),
        "--name=sipfleet",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=sipfleet={peer}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_argv(bins: Binaries, layout: Layout, p: PKI, ports: Ports) -> list[str]:
    address = hostnet.NODE_IP
    return [
        str(bins.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={p.serving.cert}",
        f"--tls-private-key-file={p.serving.key}",
        f"--client-ca-file={p.ca.cert}",
        "--authorization-mode=Node,RBAC",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={p.service_account_pub}",
        f"--service-account-signing-key-file={p.service_account_key}",
        f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
        f"--service-cluster-ip-range={hostnet.SERVICE_CIDR}",
        "--allow-privileged=true",
        "--profiling=false",
        f"--cert-dir={layout.pki / 'apiserver'}",
        # `kubectl logs` and `exec` go through the API server to the kubelet.
        f"--kubelet-client-certificate={p.apiserver_kubelet_client.cert}",
        f"--kubelet-client-key={p.apiserver_kubelet_client.key}",
        f"--kubelet-certificate-authority={p.ca.cert}",
        "--kubelet-preferred-address-types=InternalIP",
    ]


def controller_manager_argv(bins: Binaries, layout: Layout, p: PKI, ports: Ports) -> list[str]:
    kcfg = layout.component_kubeconfig("controller-manager")
    return [
        str(bins.kube_controller_manager),
        f"--kubeconfig={kcfg}",
        f"--authentication-kubeconfig={kcfg}",
        f"--authorization-kubeconfig={kcfg}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--tls-cert-file={p.serving.cert}",
        f"--tls-private-key-file={p.serving.key}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={p.service_account_key}",
        f"--root-ca-file={p.ca.cert}",
        # All of kube-controller-manager's default controllers (EndpointSlices
        # for Services, node lifecycle, disruption budgets, garbage collection).
        "--controllers=*",
        "--concurrent-gc-syncs=5",
        "--profiling=false",
    ]
