"""Configuration files and manifests of the real node, as text.

Each setting here is one this machine needs (cgroup v1, no systemd, no
CAP_SYS_RESOURCE, no registry); devcluster/README.md says why for each.
"""

from __future__ import annotations

import json
from pathlib import Path

from sipfleet.devcluster import hostnet
from sipfleet.devcluster.binaries import NodeBinaries

CLUSTER_DOMAIN = "cluster.local"
PAUSE_IMAGE = "sipfleet.local/pause:3.10"
COREDNS_IMAGE = "sipfleet.local/coredns:v1.14.7"
COREDNS_PORT = 1053
DEAD_REGISTRY = "http://127.0.0.1:9"
"""Every registry host points here (the discard port, nothing listens): no pull leaves."""
REGISTRIES = ("docker.io", "registry.k8s.io", "quay.io", "ghcr.io", "gcr.io", "_default")
CNI_NETWORK = "sipfleet"
LOAD_BALANCER_RANGE = "10.245.0.8/29"
"""Addresses a LoadBalancer Service may be given here (no load balancer runs: a
test writes them into status.loadBalancer.ingress, and kube-proxy DNATs them).
Pods route them to the host, as a cloud's VIPs are routable from its pods."""


def containerd_toml(root: Path, bins: NodeBinaries, sockets: Path) -> str:
    """containerd 2.x config (version 3) with everything under `root` but its two
    sockets, which go in `sockets` (a unix socket path has at most 104 bytes, and a
    state dir under pytest's basetemp can be longer than that leaves)."""
    return f"""version = 3
root = "{root}/root"
state = "{root}/state"

[grpc]
  address = "{sockets}/containerd.sock"
[ttrpc]
  address = "{sockets}/containerd.sock.ttrpc"

# Nothing outside `root` (defaults: /opt/containerd, /var/run/nri/nri.sock).
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{root}/certs.d"

[plugins."io.containerd.transfer.v1.local"]
  config_path = "{root}/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  # Nothing here may lower its oom_score_adj; without this every sandbox
  # fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{bins.runc}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{bins.cni_bin_dir}"]
    conf_dir = "{root}/net.d"
    max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def registry_hosts_toml(host: str) -> str:
    """hosts.toml for one registry: every request goes to the dead local port."""
    return (
        f'server = "{DEAD_REGISTRY}"\n\n'
        f'[host."{DEAD_REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n'
    )


def cni_conflist(ipam_dir: Path) -> str:
    """The pod network: the bridge plugin, host-local IPAM, no default route, no
    masquerade; then portmap, which makes a Pod's ``hostPort`` a DNAT on the node
    (iptables chains ``CNI-HOSTPORT-*``/``CNI-DN-*`` in the nat table, removed by
    `realnode.remove_portmap_chains` on `dev down`). The operator gives each host
    port a ``hostIP`` (the node address), so only that address is translated,
    never 127.0.0.1 or the host's other addresses."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": hostnet.POD_BRIDGE,
                    "isGateway": True,
                    "isDefaultGateway": False,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(ipam_dir),
                        "ranges": [[{"subnet": hostnet.POD_CIDR, "gateway": hostnet.POD_GATEWAY}]],
                        "routes": [
                            {"dst": hostnet.SERVICE_CIDR, "gw": hostnet.POD_GATEWAY},
                            {"dst": f"{hostnet.NODE_IP}/32", "gw": hostnet.POD_GATEWAY},
                            {"dst": LOAD_BALANCER_RANGE, "gw": hostnet.POD_GATEWAY},
                        ],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            ],
        },
        indent=2,
    )


def kubelet_config(
    *,
    root: Path,
    containerd_sock: Path,
    ca: Path,
    cert: Path,
    key: Path,
    port: int,
    healthz_port: int,
) -> str:
    """KubeletConfiguration for cgroup v1 + cgroupfs on a host without systemd."""
    return json.dumps(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "oomScoreAdj": 0,
            "failSwapOn": False,
            # Imported images can never be pulled back: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "address": hostnet.NODE_IP,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            "tlsCertFile": str(cert),
            "tlsPrivateKeyFile": str(key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(ca)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": f"unix://{containerd_sock}",
            "podLogsDir": str(root / "pod-logs"),
            "clusterDNS": [hostnet.DNS_SERVICE_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            # No host resolver inside pods: cluster names only.
            "resolvConf": "",
            "serializeImagePulls": False,
            "maxPods": 110,
            "staticPodPath": "",
            "syncFrequency": "10s",
            "nodeStatusReportFrequency": "10s",
        },
        indent=2,
    )


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> str:
    """KubeProxyConfiguration: nftables, NodePorts on the node IP only, host sysctls untouched."""
    return json.dumps(
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "nftables",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": "",
            "clusterCIDR": hostnet.POD_CIDR,
            # On 127.0.0.1 NodePorts would capture local ports 30000-32767.
            "nodePortAddresses": [f"{hostnet.NODE_IP}/32"],
            "oomScoreAdj": 0,
            "healthzBindAddress": f"127.0.0.1:{healthz_port}",
            "metricsBindAddress": f"127.0.0.1:{metrics_port}",
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        },
        indent=2,
    )


def coredns_manifest() -> str:
    """CoreDNS in kube-system: cluster names only (no ``forward``), Service kube-dns."""
    corefile = f""".:{COREDNS_PORT} {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
    loop
}}
"""
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": corefile},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "kube-dns"}},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65534,
                            "runAsGroup": 65534,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "coredns",
                                "image": COREDNS_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {
                                        "name": "dns",
                                        "containerPort": COREDNS_PORT,
                                        "protocol": "UDP",
                                    },
                                    {
                                        "name": "dns-tcp",
                                        "containerPort": COREDNS_PORT,
                                        "protocol": "TCP",
                                    },
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 1,
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": 8080},
                                    "periodSeconds": 10,
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns"},
            },
            "spec": {
                "clusterIP": hostnet.DNS_SERVICE_IP,
                "selector": {"k8s-app": "kube-dns"},
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": COREDNS_PORT, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": COREDNS_PORT, "protocol": "TCP"},
                ],
            },
        },
    ]
    return "\n---\n".join(json.dumps(d) for d in docs)
