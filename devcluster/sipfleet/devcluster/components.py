"""The command lines of the control-plane components, and the kubelet's RBAC.

Everything listens on 127.0.0.1 only, except with the real node, where the
API server listens on the node IP (pods reach it through the `kubernetes`
Service; see hostnet.py).
"""

from __future__ import annotations

import sys

from sipfleet.devcluster import hostnet
from sipfleet.devcluster.binaries import Binaries
from sipfleet.devcluster.layout import Layout, Ports
from sipfleet.devcluster.pki import PKI

NODE_NAME = "sipfleet-local"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "job-controller",
    "disruption-controller",  # PodDisruptionBudget status: the eviction API needs it
)
# The local kubelet also schedules (pods/binding) and mints pod tokens; RBAC
# grants it exactly what it calls, on top of the Node authorizer.
KUBELET_RBAC = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "sipfleet:local-kubelet"}}
rules:
- {{apiGroups: [""], resources: [nodes, nodes/status],
   verbs: [get, list, watch, create, patch, update]}}
- {{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update]}}
- {{apiGroups: [""], resources: [pods], verbs: [get, list, watch, delete]}}
- {{apiGroups: [""], resources: [pods/status], verbs: [patch, update]}}
- {{apiGroups: [""], resources: [pods/binding], verbs: [create]}}
- {{apiGroups: [""], resources: [secrets, configmaps], verbs: [get]}}
- {{apiGroups: [""], resources: [serviceaccounts/token], verbs: [create]}}
- {{apiGroups: ["", events.k8s.io], resources: [events], verbs: [create, patch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "sipfleet:local-kubelet"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "sipfleet:local-kubelet"}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:node:{NODE_NAME}"}}
"""
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


def apiserver_argv(
    bins: Binaries, layout: Layout, p: PKI, ports: Ports, *, real_node: bool = False
) -> list[str]:
    address = hostnet.NODE_IP if real_node else "127.0.0.1"
    # The process kubelet has no kube-proxy, and Endpoints may not point into
    # 127.0.0.0/8: no `kubernetes` Endpoints then.
    endpoints = [] if real_node else ["--endpoint-reconciler-type=none"]
    return [
        str(bins.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        *endpoints,
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
        # `kubectl logs` goes through the API server to the local kubelet.
        f"--kubelet-client-certificate={p.apiserver_kubelet_client.cert}",
        f"--kubelet-client-key={p.apiserver_kubelet_client.key}",
        f"--kubelet-certificate-authority={p.ca.cert}",
        "--kubelet-preferred-address-types=InternalIP",
    ]


def controller_manager_argv(
    bins: Binaries, layout: Layout, p: PKI, ports: Ports, *, real_node: bool = False
) -> list[str]:
    # The real node needs the rest too (EndpointSlices for Services, node
    # lifecycle, disruption budgets): all of kube-controller-manager's defaults.
    controllers = "*" if real_node else ",".join(CONTROLLERS)
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
        f"--controllers={controllers}",
        "--concurrent-gc-syncs=5",
        "--profiling=false",
    ]


def kubelet_argv(layout: Layout, p: PKI, ports: Ports) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sipfleet.devcluster.kubelet",
        f"--state-dir={layout.root}",
        f"--kubeconfig={layout.component_kubeconfig('kubelet')}",
        f"--node-name={NODE_NAME}",
        f"--port={ports.kubelet}",
        f"--tls-cert-file={p.serving.cert}",
        f"--tls-private-key-file={p.serving.key}",
        f"--client-ca-file={p.ca.cert}",
    ]
