"""Pure builders and readers for the server Pods and the admin-token Secret.

Names are deterministic (``<fleet>-main``, ``<fleet>-node-<n>``): creating a
Pod that already exists is a no-op, so a restarted operator never duplicates
servers. Every object carries an owner reference to its SipFleet, so deleting
the fleet garbage-collects them.
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sipfleet.node.restore import Hosted
from sipfleet.operator.kube import Obj
from sipfleet.operator.models import SipFleetSpec

API_GROUP = "sipfleet.io"
API_VERSION = "v1alpha1"
LABEL_FLEET = "sipfleet.io/fleet"
LABEL_ROLE = "sipfleet.io/role"
LABEL_INDEX = "sipfleet.io/index"
LABEL_CONFERENCE = "sipfleet.io/conference"
LABEL_DRAINING = "sipfleet.io/draining"
TOKEN_KEY = "token"
TOKEN_MOUNT = "/var/run/sipfleet/admin"
CREDENTIALS_MOUNT = "/etc/sipfleet/members"
CREDENTIALS_KEY = "credentials.yaml"
TLS_MOUNT = "/etc/sipfleet/tls"
"""Where the tls Secret (tls.crt, tls.key) is mounted; the server reloads it on change."""
CA_MOUNT = "/etc/sipfleet/ca"
CA_KEY = "ca.crt"
SIP_PORT = 5060
ADMIN_PORT = 8080
SERVER_UID = 10001
"""The node image's non-root user and group (images/Dockerfile, images/build.py)."""
TMP_MOUNT = "/tmp"
HOSTED_FILE = f"{TMP_MOUNT}/sipfleet-hosted.json"
"""Where a server keeps its groups (sip-node restore.py): the /tmp emptyDir outlives a
container restart, not the Pod, so a restarted server knows it restarted."""
EXPECTED_GROUPS = "sipfleet.io/expected-groups"
"""Annotation of a new main server Pod: the groups it will host (sip-node restore.Hosted,
member counts 0), so it answers 503 + Retry-After, not 404, until they are back."""
PODINFO_MOUNT = "/etc/sipfleet/podinfo"
EXPECTED_GROUPS_FILE = f"{PODINFO_MOUNT}/expected-groups"
"""The EXPECTED_GROUPS annotation as a file (a downward API volume; empty without it)."""

# The restricted Pod Security Standard: a namespace enforcing it admits only
# Pods that say all of this; the root filesystem is read-only, so the server
# gets a small /tmp emptyDir (its working directory in the image).
POD_SECURITY_CONTEXT: Obj = {
    "runAsNonRoot": True,
    "runAsUser": SERVER_UID,
    "runAsGroup": SERVER_UID,
    "fsGroup": SERVER_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: Obj = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

Role = Literal["main", "node"]

_NODE_NAME = re.compile(r"^(?P<fleet>.+)-node-(?P<index>\d+)$")


def owner_reference(owner: Mapping[str, Any]) -> Obj:
    """A controller owner reference to ``owner`` (a custom resource body)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def main_pod_name(fleet: str) -> str:
    return f"{fleet}-main"


def node_pod_name(fleet: str, index: int) -> str:
    return f"{fleet}-node-{index}"


def node_index(pod_name: str) -> int | None:
    """The ``n`` of ``<fleet>-node-<n>``, or None for any other name."""
    m = _NODE_NAME.match(pod_name)
    return int(m["index"]) if m else None


def conference_of(pod: Mapping[str, Any]) -> str | None:
    """The SipConference a node Pod was created for (its label)."""
    labels: Mapping[str, str] = pod.get("metadata", {}).get("labels") or {}
    return labels.get(LABEL_CONFERENCE)


def fleet_selector(fleet: str, role: Role | None = None) -> str:
    """Label selector for the fleet's server Pods (optionally one role)."""
    sel = f"{LABEL_FLEET}={fleet}"
    return f"{sel},{LABEL_ROLE}={role}" if role else sel


def token_secret(name: str, fleet_body: Mapping[str, Any], token: str | None = None) -> Obj:
    """The admin-token Secret with a fresh random token unless one is given."""
    value = token or secrets.token_urlsafe(32)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": fleet_body["metadata"]["namespace"],
            "labels": {LABEL_FLEET: fleet_body["metadata"]["name"]},
            "ownerReferences": [owner_reference(fleet_body)],
        },
        "data": {TOKEN_KEY: base64.b64encode(value.encode()).decode()},
    }


def secret_token(secret: Mapping[str, Any]) -> str:
    """The token stored in an admin-token Secret; ValueError names what is wrong."""
    data = secret.get("data") or {}
    raw = data.get(TOKEN_KEY)
    name = secret.get("metadata", {}).get("name")
    if not raw:
        raise ValueError(f"Secret {name} has no '{TOKEN_KEY}' key: add one with the admin token")
    token = base64.b64decode(raw).decode().strip()
    if not token:
        raise ValueError(f"Secret {name} has an empty '{TOKEN_KEY}': put a non-empty token in it")
    return token


@dataclass(frozen=True)
class ServerPodSpec:
    """What a server Pod needs beyond its name and role."""

    image: str
    domain: str
    token_secret: str
    sip_port: int = SIP_PORT
    admin_port: int = ADMIN_PORT
    tree_fanout: int = 8
    grace_seconds: int = 30
    """terminationGracePeriodSeconds, also the server's graceful-exit budget."""
    drain_rate: int = 50
    """Members/s the server moves away on SIGTERM."""
    credentials_secret: str | None = None
    """Secret with the members' digest credentials (key CREDENTIALS_KEY), if any."""
    tls_secret: str | None = None
    """kubernetes.io/tls Secret (tls.crt, tls.key) for SIP over TLS and wss, if any."""
    tls_port: int = 5061
    ca_secret: str | None = None
    """Secret with extra CAs (key CA_KEY) trusted for outbound TLS, if any."""
    s2s_tls: bool = False
    """Requests between servers over TLS (CAs: ca_secret, else the tls Secret's ca.crt)."""
    ws_port: int = 0
    """SIP over WebSocket port; 0: off."""
    wss_port: int = 0
    """SIP over secure WebSocket port; 0: off."""
    extra_env: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, Any] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)


def token_secret_name(fleet: str, spec: SipFleetSpec) -> str:
    """The fleet's admin-token Secret: the one it names, else ``<fleet>-admin-token``."""
    return spec.admin_token_secret or f"{fleet}-admin-token"


def server_pod_spec(
    fleet: str, spec: SipFleetSpec, role: Role, conference: str | None = None
) -> ServerPodSpec:
    """The inputs of a main or node Pod, from the SipFleet spec."""
    tpl = spec.node_template
    ports = (
        (spec.main_server.sip_port, spec.main_server.admin_port)
        if role == "main"
        else (tpl.sip_port, tpl.admin_port)
    )
    return ServerPodSpec(
        image=tpl.image,
        domain=spec.main_server.domain,
        token_secret=token_secret_name(fleet, spec),
        sip_port=ports[0],
        admin_port=ports[1],
        tree_fanout=spec.tree_fanout,
        grace_seconds=spec.grace_period_seconds(),
        drain_rate=spec.disruption.members_per_second,
        credentials_secret=spec.member_credentials_secret,
        tls_secret=spec.tls.secret_name,
        tls_port=spec.tls.port,
        ca_secret=spec.tls.ca_secret_name,
        s2s_tls=spec.tls.server_to_server,
        ws_port=spec.websocket.ws_port,
        wss_port=spec.websocket.wss_port,
        extra_env={e.name: e.value for e in tpl.env},
        resources={k: v for k, v in tpl.resources.to_k8s().items() if v} if role == "node" else {},
        pod_labels={LABEL_CONFERENCE: conference} if conference else {},
    )


def _field_env(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def server_pod(
    fleet_body: Mapping[str, Any],
    name: str,
    role: Role,
    spec: ServerPodSpec,
    index: int | None = None,
) -> Obj:
    """A server Pod manifest: sip-node configured through env, probed on /readyz.

    The Pod satisfies the restricted Pod Security Standard (non-root uid
    `SERVER_UID`, read-only root filesystem, no capabilities, RuntimeDefault
    seccomp), so a namespace enforcing that standard admits it.
    """
    fleet = fleet_body["metadata"]["name"]
    labels = {**spec.pod_labels, LABEL_FLEET: fleet, LABEL_ROLE: role}
    if index is not None:
        labels[LABEL_INDEX] = str(index)
    env = [
        {"name": "SIPFLEET_ROLE", "value": role},
        _field_env("SIPFLEET_NAME", "metadata.name"),
        _field_env("SIPFLEET_LISTEN", "status.podIP"),
        {"name": "SIPFLEET_DOMAIN", "value": spec.domain},
        {"name": "SIPFLEET_SIP_PORT", "value": str(spec.sip_port)},
        {"name": "SIPFLEET_ADMIN_PORT", "value": str(spec.admin_port)},
        {"name": "SIPFLEET_TOKEN_FILE", "value": f"{TOKEN_MOUNT}/{TOKEN_KEY}"},
        {"name": "SIPFLEET_TREE_FANOUT", "value": str(spec.tree_fanout)},
        {"name": "SIPFLEET_SHUTDOWN_SECONDS", "value": str(spec.grace_seconds)},
        {"name": "SIPFLEET_DRAIN_RATE", "value": str(spec.drain_rate)},
        {"name": "SIPFLEET_HOSTED_FILE", "value": HOSTED_FILE},
        *({"name": k, "value": v} for k, v in sorted(spec.extra_env.items())),
    ]
    mounts: list[Obj] = [
        {"name": "admin-token", "mountPath": TOKEN_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": TMP_MOUNT},
    ]
    volumes: list[Obj] = [
        {"name": "admin-token", "secret": {"secretName": spec.token_secret}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
    ]
    if spec.credentials_secret:
        env.append(
            {"name": "SIPFLEET_CREDENTIALS_FILE", "value": f"{CREDENTIALS_MOUNT}/{CREDENTIALS_KEY}"}
        )
        mounts.append(
            {"name": "member-credentials", "mountPath": CREDENTIALS_MOUNT, "readOnly": True}
        )
        volumes.append(
            {"name": "member-credentials", "secret": {"secretName": spec.credentials_secret}}
        )
    if role == "main":  # recreated under its name by rollouts and evictions
        env.append({"name": "SIPFLEET_EXPECTED_GROUPS_FILE", "value": EXPECTED_GROUPS_FILE})
        mounts.append({"name": "podinfo", "mountPath": PODINFO_MOUNT, "readOnly": True})
        volumes.append({"name": "podinfo", "downwardAPI": {"items": [_expected_groups_item()]}})
    _secret_files(spec, env, mounts, volumes)
    container: Obj = {
        "name": "sip-node",
        "image": spec.image,
        "env": env,
        "ports": [
            {"name": "sip-udp", "containerPort": spec.sip_port, "protocol": "UDP"},
            {"name": "sip-tcp", "containerPort": spec.sip_port, "protocol": "TCP"},
            *(
                {"name": name, "containerPort": port, "protocol": "TCP"}
                for name, port in stream_ports(spec)
            ),
            {"name": "admin", "containerPort": spec.admin_port, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": spec.admin_port},
            "periodSeconds": 1,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": spec.admin_port},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
        "volumeMounts": mounts,
    }
    if spec.resources:
        container["resources"] = dict(spec.resources)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": fleet_body["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(fleet_body)],
        },
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": spec.grace_seconds,
            "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
            "containers": [container],
            "volumes": volumes,
        },
    }


def _expected_groups_item() -> Obj:
    path = f"metadata.annotations['{EXPECTED_GROUPS}']"
    return {"path": EXPECTED_GROUPS_FILE.rsplit("/", 1)[1], "fieldRef": {"fieldPath": path}}


def expected_groups(groups: Iterable[str]) -> dict[str, str]:
    """The EXPECTED_GROUPS annotation of a new main server Pod that will host `groups`
    (group URIs); {} for none."""
    listed = sorted(set(groups))
    return {EXPECTED_GROUPS: Hosted(dict.fromkeys(listed, 0)).to_bytes().decode()} if listed else {}


def stream_ports(spec: ServerPodSpec) -> list[tuple[str, int]]:
    """(port name, port) of the TLS and WebSocket listeners the spec turns on
    (names sip-tls, sip-ws, sip-wss), for the Pod's container and its Services."""
    ports = [("sip-tls", spec.tls_port)] if spec.tls_secret else []
    if spec.ws_port:
        ports.append(("sip-ws", spec.ws_port))
    if spec.wss_port and spec.tls_secret:
        ports.append(("sip-wss", spec.wss_port))
    return ports


def _secret_files(
    spec: ServerPodSpec, env: list[Obj], mounts: list[Obj], volumes: list[Obj]
) -> None:
    """Mount the TLS certificate (and extra CAs) and point the server at them; set
    the TLS and WebSocket ports (docs/transport.md)."""
    if spec.tls_secret:
        env += [
            {"name": "SIPFLEET_TLS_CERT_FILE", "value": f"{TLS_MOUNT}/tls.crt"},
            {"name": "SIPFLEET_TLS_KEY_FILE", "value": f"{TLS_MOUNT}/tls.key"},
            {"name": "SIPFLEET_TLS_PORT", "value": str(spec.tls_port)},
        ]
        mounts.append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
        volumes.append({"name": "tls", "secret": {"secretName": spec.tls_secret}})
        if spec.wss_port:
            env.append({"name": "SIPFLEET_WSS_PORT", "value": str(spec.wss_port)})
        if spec.s2s_tls:
            env.append({"name": "SIPFLEET_S2S_TRANSPORT", "value": "tls"})
            if not spec.ca_secret:  # the fleet CA that cert-manager puts beside the pair
                env.append({"name": "SIPFLEET_TLS_CA_FILE", "value": f"{TLS_MOUNT}/{CA_KEY}"})
    if spec.ca_secret:
        env.append({"name": "SIPFLEET_TLS_CA_FILE", "value": f"{CA_MOUNT}/{CA_KEY}"})
        mounts.append({"name": "tls-ca", "mountPath": CA_MOUNT, "readOnly": True})
        volumes.append({"name": "tls-ca", "secret": {"secretName": spec.ca_secret}})
    if spec.ws_port:
        env.append({"name": "SIPFLEET_WS_PORT", "value": str(spec.ws_port)})


def terminating(pod: Mapping[str, Any]) -> bool:
    """Kubernetes is stopping the Pod (deletionTimestamp set: delete, eviction, drain)."""
    return bool(pod.get("metadata", {}).get("deletionTimestamp"))


def pod_ready(pod: Mapping[str, Any], *, stopping_too: bool = False) -> bool:
    """True when the Pod is Running with condition Ready=True and (unless
    ``stopping_too``) not being deleted."""
    if terminating(pod) and not stopping_too:
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def admin_port(pod: Mapping[str, Any]) -> int:
    """The container port named ``admin`` (8080 when the Pod does not name one)."""
    for container in (pod.get("spec") or {}).get("containers", []):
        for port in container.get("ports") or []:
            if port.get("name") == "admin":
                return int(port["containerPort"])
    return ADMIN_PORT


def admin_url(pod: Mapping[str, Any]) -> str | None:
    """``http://<podIP>:<admin port>`` once the Pod has an IP."""
    ip = (pod.get("status") or {}).get("podIP")
    return f"http://{ip}:{admin_port(pod)}" if ip else None
