"""Custom resources of group ``sipfleet.io`` as pydantic models.

These models are the single source of truth: the operator parses specs with
them and ``crdgen`` turns their JSON schema into the CRD's structural OpenAPI
schema. Python attributes are snake_case; the Kubernetes JSON is camelCase.

Rules that span fields appear twice on purpose: as a ``model_validator``
(so the operator never trusts an object blindly) and as a CEL rule under
``x-kubernetes-validations`` (so the API server rejects the object first).
Both live next to each other in the model that owns them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from sipfleet.node.auth.policy import (
    ALGORITHM_CHOICES,
    ALGORITHMS_RULE,
    AOR_PATTERN,
    Algorithm,
    Mode,
    check_algorithms,
)

GROUP = "sipfleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "sip"  # not "sipfleet": that would shadow the singular of SipFleet

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
HTTP_URL = r"^https?://[^\s]+$"
# A group URI: sip: or sips:, a user part and a host (optionally :port). The
# same expression is used by pydantic (Python re) and by CEL (RE2).
SIP_URI = (
    r"^sips?:[A-Za-z0-9._~!$&'()*+,=%-]+"
    r"@[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"
)
_SIP_URI_RE = re.compile(SIP_URI)

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[int, Field(ge=0, le=3600)]
Quantity = int | str
"""A Kubernetes resource quantity (``500m``, ``1Gi``, ``2``)."""


def _cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One ``x-kubernetes-validations`` entry."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def _section(model: type[CrdModel], description: str) -> Any:
    """A nested object that may be omitted; it then defaults to all its defaults.

    The schema default is spelled out in full (not ``{}``): the API server
    checks a default against the object's CEL rules before nested defaults
    apply.
    """
    return Field(
        default_factory=model,
        description=description,
        json_schema_extra={"default": model().to_k8s()},
    )


def _map_list(key: str) -> JsonDict:
    """Mark a list as a map keyed by ``key`` (server-side apply merges by key)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]}


class CrdModel(BaseModel):
    """Base: camelCase aliases, population by either name, unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    def to_k8s(self) -> dict[str, Any]:
        """The object as Kubernetes JSON (camelCase, unset optionals omitted)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --------------------------------------------------------------------------- shared


class Condition(CrdModel):
    """A status condition, following Kubernetes API conventions."""

    type: str = Field(
        max_length=316,
        description="Condition type: Ready, Scaling or Degraded.",
    )
    status: Literal["True", "False", "Unknown"] = Field(
        description="Whether the condition holds: True, False or Unknown."
    )
    reason: str = Field(
        default="",
        max_length=1024,
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(
        default="", max_length=32768, description="Human-readable detail about the condition."
    )
    last_transition_time: str | None = Field(
        default=None,
        description="When the status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation the condition was computed from.",
    )


class ResourceRequirements(CrdModel):
    """Compute resources of a container, as in a Pod spec."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Minimum resources the scheduler reserves, e.g. {cpu: 100m, memory: 128Mi}.",
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Maximum resources the container may use, e.g. {cpu: '1', memory: 256Mi}.",
    )


class EnvVar(CrdModel):
    """An extra environment variable for the node container."""

    name: str = Field(
        max_length=256, pattern=ENV_NAME, description="Variable name, e.g. SIPFLEET_LOG_LEVEL."
    )
    value: str = Field(default="", max_length=4096, description="Literal value of the variable.")


# --------------------------------------------------------------------------- SipFleet


class ServerPorts(CrdModel):
    """The two ports every SIP server listens on; they must differ."""

    sip_port: Port = Field(default=5060, description="UDP/TCP port for SIP.")
    admin_port: Port = Field(default=8080, description="HTTP port of the admin API and /metrics.")

    @model_validator(mode="after")
    def _distinct_ports(self) -> Self:
        if self.sip_port == self.admin_port:
            raise ValueError(f"sipPort and adminPort must differ (both {self.sip_port})")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.sipPort != self.adminPort",
                    "sipPort and adminPort must differ",
                    ".adminPort",
                )
            ]
        }
    )


class MainServerSpec(ServerPorts):
    """The main SIP server: the root of every group's distribution tree."""

    domain: str = Field(
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="SIP domain the fleet serves; group URIs live under it (e.g. example.com).",
    )


class NodeTemplate(ServerPorts):
    """How the operator builds the Pods of additional SIP servers (nodes)."""

    image: str = Field(
        default="sipfleet/node:0.1.0",
        min_length=1,
        max_length=512,
        description="Container image of the SIP server.",
    )
    resources: ResourceRequirements = _section(
        ResourceRequirements, "CPU and memory requests and limits of the node container."
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="Extra environment variables for the node container.",
        json_schema_extra=_map_list("name"),
    )


class MetricsQueries(CrdModel):
    """PromQL overrides for the Prometheus load source."""

    members: str | None = Field(
        default=None,
        max_length=2048,
        description="PromQL selecting a group's members per Pod; $group becomes the group URI "
        "and the operator sums the result by pod "
        '(default: last_over_time(sipfleet_node_members{group="$group"}[staleAfterSeconds])).',
    )


class MetricsSpec(CrdModel):
    """Where the operator reads load from."""

    prometheus_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=HTTP_URL,
        description="Prometheus base URL (http or https). When absent the operator scrapes "
        "each server's /metrics directly.",
    )
    queries: MetricsQueries = _section(MetricsQueries, "Optional PromQL query overrides.")
    stale_after_seconds: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="Samples older than this count as stale; stale metrics block scale-in.",
    )


GRACE_MARGIN_SECONDS = 15
"""Added to the time a full server takes to move its members: a replacement
server's start-up (its Pod scheduled, ready, routed), the last REFERs'
round trips, and the exit's own reserve (sip-node runner.EXIT_RESERVE)."""


class DisruptionPolicy(CrdModel):
    """How a server leaves when Kubernetes stops it (delete, eviction, drain)."""

    members_per_second: int = Field(
        default=50,
        ge=1,
        le=10000,
        description="Rate at which a stopping server moves its members to the group's "
        "other servers (REFER), all its groups together.",
    )
    grace_period_seconds: int | None = Field(
        default=None,
        ge=1,
        le=3600,
        description="terminationGracePeriodSeconds of server Pods. Default: membersPerNode / "
        f"membersPerSecond rounded up, plus {GRACE_MARGIN_SECONDS} s.",
    )


class RolloutPolicy(CrdModel):
    """How a change of the node template reaches running server Pods."""

    max_unavailable: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Node Pods of one conference stopped at once to be replaced by Pods of "
        "the new template; "
        "each moves its members away first (graceful exit) and its replacement starts at "
        "once (surge = the same number).",
    )
    main_server: bool = Field(
        default=True,
        description="Roll the main server too: last, alone, once every node runs the new "
        "template and is Ready and the nodes have room for its members (more nodes are "
        "started if needed). It moves its members to the nodes and is created again under "
        "its name once its Pod is gone; the group URI has no server for those seconds. "
        "false: it keeps its old Pod until something else replaces it.",
    )


ExposureMode = Literal["PodIP", "HostPort", "NodePort", "LoadBalancer"]
EntryServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]
NodeAddressType = Literal["InternalIP", "ExternalIP"]


class HostPortRange(CrdModel):
    """Host ports HostPort-mode servers take, the lowest free one on their node."""

    first: Port = Field(default=5060, description="Lowest host port (UDP and TCP alike).")
    last: Port = Field(default=5099, description="Highest host port.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.first > self.last:
            raise ValueError(f"hostPorts.first ({self.first}) exceeds last ({self.last})")
        return self

    def ports(self) -> range:
        """The ports, first to last inclusive."""
        return range(self.first, self.last + 1)

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("self.first <= self.last", "first must not exceed last", ".first")
            ]
        }
    )


class ExposureSpec(CrdModel):
    """How members reach the servers (docs/install.md, "Reaching the fleet")."""

    mode: ExposureMode = Field(
        default="PodIP",
        description="What each server advertises in Via, Contact, the 302's Contact, "
        "Refer-To and SDP: PodIP (its Pod IP; members inside the cluster or a routable "
        "pod network), HostPort (its node's InternalIP or ExternalIP and a host port "
        "the operator picks free on that node, see hostPorts), NodePort or LoadBalancer (a Service "
        "per server, created before its Pod; the Pod starts once the Service has an "
        "address and advertises it).",
    )
    entry_service_type: EntryServiceType = Field(
        default="ClusterIP",
        description="Type of the Service '<fleet>-sip' in front of the main server, the "
        "fleet's stable entry point (target of the domain's _sip._udp/_sip._tcp SRV).",
    )
    node_address_type: NodeAddressType = Field(
        default="InternalIP",
        description="HostPort mode: the node address a server advertises, its node's "
        "InternalIP or ExternalIP. The operator places each server on a node that has "
        "one; while none has, no server is created and a NodeAddressMissing Event and "
        "the fleet's Exposed condition say so.",
    )
    host_ports: HostPortRange = _section(
        HostPortRange,
        "HostPort mode: the host ports servers take; each server gets the lowest one "
        "no Pod on its node holds, so servers on one node never collide.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="IP addresses of edge proxies or SBCs in front of the fleet, which "
        "carry many members: every server exempts them from its per-source rate limit and "
        "locks out a member failing authentication through one by its From AOR, never the "
        "proxy's address (sipfleet-node --trusted-proxies).",
        json_schema_extra={
            "items": {"type": "string", "maxLength": 45},
            "x-kubernetes-validations": [
                _cel("self.all(a, isIP(a))", "every trusted proxy must be an IP address")
            ],
        },
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _ip_addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            ipaddress.ip_address(address)  # ValueError names the bad one
        return value


class TlsSpec(CrdModel):
    """SIP over TLS (RFC 3261 26.2, sips:) and the certificate of every server."""

    secret_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Secret of type kubernetes.io/tls (keys 'tls.crt' and 'tls.key', as "
        "cert-manager writes them) mounted into every server; a changed Secret is used for "
        "new connections within seconds, without dropping calls. Absent: no TLS, no wss.",
    )
    port: Port = Field(
        default=5061,
        description="SIP over TLS port of every server. A 302 or REFER to another server "
        "names its TLS port as far above its SIP port as this is above the main server's "
        "(docs/transport.md), so main and node SIP ports must be equal.",
    )
    ca_secret_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Secret whose key 'ca.crt' holds extra CAs (PEM) a server trusts when "
        "it opens a TLS connection to a member; the system CAs are trusted as well.",
    )
    server_to_server: bool = Field(
        default=False,
        description="Requests between the fleet's servers (distribution, transfers) over "
        "TLS too, to each other's TLS port; each server's certificate is checked against "
        "caSecretName's ca.crt, else the tls Secret's own ca.crt (cert-manager writes it), "
        "without an address check (Pod IPs are not in certificates).",
    )


class WebSocketSpec(CrdModel):
    """SIP over WebSocket (RFC 7118) for browser clients (JsSIP, SIP.js)."""

    ws_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Plain WebSocket (ws) port of every server; 0 (the default): off. "
        "Messages cross the network in clear: prefer wssPort.",
    )
    wss_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Secure WebSocket (wss) port of every server, with the tls Secret's "
        "certificate; 0 (the default): off.",
    )


class SipFleetSpec(CrdModel):
    """Desired state of a fleet: one main SIP server plus elastic nodes."""

    main_server: MainServerSpec = Field(description="The main SIP server (root of every group).")
    node_template: NodeTemplate = _section(NodeTemplate, "Pod template of additional nodes.")
    min_nodes: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="Nodes each conference keeps even when idle (warm spares).",
    )
    max_nodes: int = Field(
        default=10,
        ge=0,
        le=1000,
        description="Upper bound on node Pods in the whole fleet (main server not counted).",
    )
    members_per_node: int = Field(
        default=100,
        ge=1,
        le=100000,
        description="Default members one server hosts per group (a conference may override).",
    )
    tree_fanout: int = Field(
        default=8,
        ge=2,
        le=64,
        description="Children per server in a group's distribution tree.",
    )
    metrics: MetricsSpec = _section(MetricsSpec, "Load source: Prometheus or direct scraping.")
    disruption: DisruptionPolicy = _section(
        DisruptionPolicy, "Graceful exit of a server Kubernetes stops: pace and grace period."
    )
    rollout: RolloutPolicy = _section(
        RolloutPolicy,
        "Rolling update of the server Pods (nodes, then the main server) on a template change.",
    )
    admin_token_secret: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Secret (key 'token') holding the admin API token; generated when absent.",
    )
    member_credentials_secret: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Secret (key 'credentials.yaml') with the members' digest credentials as "
        "realm -> user -> algorithm -> HA1, never plain passwords; mounted into every server, "
        "so a member moved to another server authenticates there too (docs/security.md).",
    )
    exposure: ExposureSpec = _section(
        ExposureSpec, "How members outside the pod network reach the servers."
    )
    tls: TlsSpec = _section(TlsSpec, "SIP over TLS: the servers' certificate and port.")
    websocket: WebSocketSpec = _section(
        WebSocketSpec, "SIP over WebSocket (ws, wss) ports for browser clients."
    )

    def grace_period_seconds(self) -> int:
        """Seconds a stopping server gets to move a full server's members away.

        ``disruption.gracePeriodSeconds`` when set, else membersPerNode at
        ``disruption.membersPerSecond`` rounded up plus ``GRACE_MARGIN_SECONDS``.
        """
        policy = self.disruption
        if policy.grace_period_seconds is not None:
            return policy.grace_period_seconds
        return -(-self.members_per_node // policy.members_per_second) + GRACE_MARGIN_SECONDS

    @model_validator(mode="after")
    def _min_le_max(self) -> Self:
        if self.min_nodes > self.max_nodes:
            raise ValueError(
                f"minNodes ({self.min_nodes}) must not exceed maxNodes ({self.max_nodes})"
            )
        return self

    @model_validator(mode="after")
    def _tls_consistent(self) -> Self:
        if self.websocket.wss_port and not self.tls.secret_name:
            raise ValueError("websocket.wssPort needs tls.secretName (the certificate)")
        if self.tls.secret_name and self.main_server.sip_port != self.node_template.sip_port:
            raise ValueError(
                "with tls.secretName, mainServer.sipPort and nodeTemplate.sipPort "
                "must be equal (every server's TLS port is as far above it)"
            )
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.minNodes <= self.maxNodes",
                    "minNodes must be less than or equal to maxNodes",
                    ".minNodes",
                ),
                _cel(
                    "!has(self.websocket) || !has(self.websocket.wssPort) || "
                    "self.websocket.wssPort == 0 || "
                    "(has(self.tls) && has(self.tls.secretName))",
                    "websocket.wssPort needs tls.secretName (the certificate)",
                    ".websocket.wssPort",
                ),
                _cel(
                    "!has(self.tls) || !has(self.tls.secretName) || "
                    "self.mainServer.sipPort == self.nodeTemplate.sipPort",
                    "with tls.secretName, mainServer.sipPort and nodeTemplate.sipPort must be "
                    "equal",
                    ".tls.secretName",
                ),
            ]
        }
    )


class MainServerStatus(CrdModel):
    """Observed state of the main server."""

    pod: str | None = Field(default=None, description="Name of the main server's Pod.")
    ip: str | None = Field(default=None, description="Pod IP of the main server.")
    ready: bool = Field(default=False, description="Whether the main server is ready for SIP.")
    updated: bool | None = Field(
        default=None,
        description=(
            "Whether the main server Pod runs the fleet's current template (a rolling "
            "update replaces it last, once every node is updated); unset while it has no Pod."
        ),
    )
    advertised: str | None = Field(
        default=None, description="host:port the main server advertises to members."
    )


class NodeStatus(CrdModel):
    """Observed state of one node Pod."""

    name: str = Field(description="Pod name of the node.")
    ip: str | None = Field(default=None, description="Pod IP of the node.")
    ready: bool = Field(default=False, description="Whether the node is ready for SIP.")
    advertised: str | None = Field(
        default=None, description="host:port the node advertises to members."
    )
    draining: bool = Field(default=False, description="Whether the node is being emptied.")
    terminating: bool = Field(
        default=False,
        description="Whether Kubernetes is stopping the Pod (deletionTimestamp set): it "
        "moves its members to other servers before it exits.",
    )
    members: int = Field(default=0, ge=0, description="Members on the node, all groups.")


class SipFleetStatus(CrdModel):
    """Observed state of a fleet."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this status reflects."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Scaling, Degraded, Rolling and Exposed (False while HostPort "
        "mode finds no node for the main server) conditions.",
        json_schema_extra=_map_list("type"),
    )
    main_server: MainServerStatus | None = Field(
        default=None, description="The main server's Pod, IP and readiness."
    )
    nodes: list[NodeStatus] = Field(
        default_factory=list,
        description="The fleet's node Pods.",
        json_schema_extra=_map_list("name"),
    )
    node_count: int = Field(default=0, ge=0, description="Number of node Pods (any state).")
    ready_nodes: int = Field(default=0, ge=0, description="Number of ready node Pods.")
    updated_nodes: int = Field(
        default=0, ge=0, description="Node Pods running the current node template."
    )
    entry_point: str | None = Field(
        default=None,
        description="Where members join: the main server's Service, host:port "
        "(its external address once it has one, else its cluster DNS name).",
    )


# --------------------------------------------------------------------------- SipConference


class FleetRef(CrdModel):
    """Reference to a SipFleet in the same namespace."""

    name: str = Field(
        max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the SipFleet to run on."
    )


class CapacitySpec(CrdModel):
    """How many members the group may have per server and in total."""

    members_per_server: int | None = Field(
        default=None,
        ge=1,
        le=100000,
        description="Members of this group one server hosts; defaults to the fleet's "
        "membersPerNode.",
    )
    max_members: int | None = Field(
        default=None,
        ge=1,
        le=10000000,
        description="Upper bound on the group's members; caps scale-out. Unlimited when absent.",
    )


class ScalingPolicy(CrdModel):
    """When and how fast the group's servers scale."""

    target_load: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="Fraction of capacity to keep in use; above it the group scales out.",
    )
    high_watermark: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="Fraction of a server's capacity above which members are moved off it.",
    )
    scale_up_stabilization_seconds: Seconds = Field(
        default=0,
        description="Scale out only to the lowest size recommended over this window.",
    )
    scale_down_stabilization_seconds: Seconds = Field(
        default=60,
        description="Scale in only to the highest size recommended over this window.",
    )
    cooldown_seconds: Seconds = Field(
        default=10, description="Minimum time between two scaling actions."
    )
    max_nodes_per_step: int = Field(
        default=2, ge=1, le=100, description="Most nodes added or drained in one step."
    )
    interval_seconds: int = Field(
        default=2, ge=1, le=60, description="How often the operator re-plans the group."
    )

    @model_validator(mode="after")
    def _target_le_watermark(self) -> Self:
        if self.target_load > self.high_watermark:
            raise ValueError(
                f"targetLoad ({self.target_load}) must not exceed "
                f"highWatermark ({self.high_watermark})"
            )
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.targetLoad <= self.highWatermark",
                    "targetLoad must be less than or equal to highWatermark",
                    ".targetLoad",
                ),
            ]
        }
    )


TransferMode = Literal["redirect-only", "refer", "refer-to-server"]


class TransferPolicy(CrdModel):
    """How existing members move between servers."""

    mode: TransferMode = Field(
        default="refer",
        description="redirect-only: only new joins go elsewhere (302); refer: the source "
        "server REFERs members to the new URI; refer-to-server: the target server "
        "INVITEs them with Replaces.",
    )
    members_per_second: int = Field(
        default=50, ge=1, le=10000, description="Total rate at which members are moved."
    )


SenderDisplayMode = Literal["auto", "cpim", "display-name", "prefix"]


class AccessSpec(CrdModel):
    """Who may join the group, post to it and read its roster (docs/security.md)."""

    policy: Mode = Field(
        default="authenticated",
        description="open: anyone (the sender is not verified); authenticated: SIP digest "
        "credentials from the fleet's memberCredentialsSecret; allowlist: authenticated "
        "and listed in allow. New conferences are authenticated unless they say open.",
    )
    allow: list[Annotated[str, Field(max_length=512, pattern=AOR_PATTERN)]] = Field(
        default_factory=list,
        max_length=10000,
        description="Addresses of record (sip:user@domain) allowed when policy is allowlist.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    algorithms: list[Algorithm] = Field(
        default_factory=lambda: list[Algorithm](["SHA-256"]),
        min_length=1,
        max_length=2,
        description="Digest algorithms members may answer with, challenged in this order: "
        "[SHA-256] (default), [SHA-256, MD5] for older phones, [MD5] only for clients "
        "that cannot skip a challenge they cannot compute.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    " || ".join(f"self == {list(choice)}" for choice in ALGORITHM_CHOICES),
                    ALGORITHMS_RULE,
                )
            ]
        },
    )

    @field_validator("algorithms")
    @classmethod
    def _sha256_first(cls, algorithms: list[str]) -> list[str]:
        check_algorithms(algorithms)
        return algorithms


class SipConferenceSpec(CrdModel):
    """Desired state of one group (conference or group chat)."""

    uri: str = Field(
        max_length=512,
        description="The group's SIP URI, e.g. sip:conf3@example.com (sip: or sips:). Immutable.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    f'self.matches("{SIP_URI}")',
                    "uri must be a sip: or sips: URI like sip:conf3@example.com",
                ),
                _cel("self == oldSelf", "uri is immutable; create a new SipConference"),
            ]
        },
    )
    fleet_ref: FleetRef = Field(description="The SipFleet whose servers host this group.")
    capacity: CapacitySpec = _section(CapacitySpec, "Per-server and total member limits.")
    scaling: ScalingPolicy = _section(ScalingPolicy, "Scaling thresholds, windows and pace.")
    transfer: TransferPolicy = _section(TransferPolicy, "How members move between servers.")
    access: AccessSpec = _section(
        AccessSpec, "Who may join, post and read the roster: open, authenticated or allowlist."
    )
    sender_display: SenderDisplayMode | None = Field(
        default=None,
        description="How members' phones are shown who wrote a group message "
        "(docs/media-and-messages.md): auto (message/cpim to members that accept it, "
        "else a 'name: ' text prefix), cpim, display-name (the From display name) or "
        "prefix. Unset: each server's --sender-display (default auto). A change reaches "
        "the group's existing shards at the next pass; unsetting it leaves them as they are.",
    )

    @field_validator("uri")
    @classmethod
    def _sip_uri(cls, uri: str) -> str:
        if not _SIP_URI_RE.match(uri):
            raise ValueError(f"uri {uri!r} must be a sip: or sips: URI like sip:conf3@example.com")
        return uri

    def members_per_server(self, fleet: SipFleetSpec) -> int:
        """Per-server capacity of this group: the conference's, else the fleet's."""
        return self.capacity.members_per_server or fleet.members_per_node


ConferencePhase = Literal["Pending", "Running", "Scaling", "Degraded", "Terminating"]
ShardState = Literal["active", "draining"]


class ShardStatus(CrdModel):
    """The group's URI on one server."""

    server: str = Field(description="Name of the server (Pod) hosting the shard.")
    uri: str = Field(description="The shard's SIP URI on that server.")
    members: int = Field(default=0, ge=0, description="Members joined to this shard.")
    state: ShardState = Field(
        default="active", description="active takes joins; draining is being emptied."
    )


class LastDecision(CrdModel):
    """The planner's most recent non-trivial decision."""

    kind: str = Field(description="What was decided, e.g. scale-out, scale-in, transfer, steady.")
    reason: str = Field(description="Why, in words.")
    time: str = Field(description="When (RFC 3339).", json_schema_extra={"format": "date-time"})


class SipConferenceStatus(CrdModel):
    """Observed state of one group."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this status reflects."
    )
    phase: ConferencePhase | None = Field(
        default=None,
        description="Pending, Running, Scaling, Degraded or Terminating.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Scaling and Degraded conditions.",
        json_schema_extra=_map_list("type"),
    )
    members: int = Field(default=0, ge=0, description="Members of the group, all servers.")
    servers: int = Field(default=0, ge=0, description="Servers hosting the group.")
    shards: list[ShardStatus] = Field(
        default_factory=list,
        description="The group's URI on each server, main first.",
        json_schema_extra=_map_list("server"),
    )
    last_decision: LastDecision | None = Field(
        default=None, description="The planner's latest decision and its reason."
    )


# --------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0


@dataclass(frozen=True)
class Resource:
    """A custom resource kind: its names, models and ``kubectl get`` columns."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[CrdModel]
    status: type[CrdModel]
    description: str
    columns: tuple[PrinterColumn, ...]

    @property
    def crd_name(self) -> str:
        """The CRD's metadata.name, e.g. sipfleets.sipfleet.io."""
        return f"{self.plural}.{GROUP}"


_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation.")

FLEET = Resource(
    kind="SipFleet",
    plural="sipfleets",
    singular="sipfleet",
    short_names=("sf",),
    spec=SipFleetSpec,
    status=SipFleetStatus,
    description="A fleet of SIP servers: one main server plus elastic node Pods.",
    columns=(
        PrinterColumn("Domain", "string", ".spec.mainServer.domain", "SIP domain.", 1),
        PrinterColumn("Nodes", "integer", ".status.nodeCount", "Node Pods."),
        PrinterColumn("Ready", "integer", ".status.readyNodes", "Ready node Pods."),
        PrinterColumn(
            "Updated", "integer", ".status.updatedNodes", "Nodes on the current template."
        ),
        PrinterColumn("Entry", "string", ".status.entryPoint", "Where members join.", 1),
        _AGE,
    ),
)

CONFERENCE = Resource(
    kind="SipConference",
    plural="sipconferences",
    singular="sipconference",
    short_names=("sipconf",),  # "sc" is StorageClass
    spec=SipConferenceSpec,
    status=SipConferenceStatus,
    description="One SIP group (conference or group chat) spread over a fleet's servers.",
    columns=(
        PrinterColumn("URI", "string", ".spec.uri", "The group's SIP URI."),
        PrinterColumn("Members", "integer", ".status.members", "Members, all servers."),
        PrinterColumn("Servers", "integer", ".status.servers", "Servers hosting the group."),
        PrinterColumn("Phase", "string", ".status.phase", "Lifecycle phase."),
        _AGE,
    ),
)

RESOURCES = (FLEET, CONFERENCE)
