"""The generated CRDs against a real kube-apiserver: the API server itself
rejects bad objects, naming the field, and `kubectl explain` documents them."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from sipfleet.devcluster.cluster import Cluster

ROOT = Path(__file__).parents[2]
NAMESPACE = "crd-validation"


def manifest(kind: str, name: str, spec: dict[str, object]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "sipfleet.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def fleet(name: str, **spec: object) -> str:
    return manifest("SipFleet", name, {"mainServer": {"domain": "example.com"}, **spec})


def conference(name: str, **spec: object) -> str:
    return manifest(
        "SipConference",
        name,
        {"uri": "sip:conf3@example.com", "fleetRef": {"name": "small"}, **spec},
    )


def retry(
    what: str, attempt: Callable[[], subprocess.CompletedProcess[str]], timeout: float = 30.0
) -> str:
    """Discovery and OpenAPI lag behind a new CRD for a few seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = attempt()
        if result.returncode == 0:
            return result.stdout
        if time.monotonic() > deadline:
            pytest.fail(f"{what} still failing after {timeout}s: {result.stderr}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Iterator[Cluster]:
    cluster.kubectl("apply", "-f", str(ROOT / "crds"))
    retry(  # a fresh API server's discovery may not list the new CRDs at once
        "waiting for the CRDs to be established",
        lambda: cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=30s",
            "crd/sipfleets.sipfleet.io", "crd/sipconferences.sipfleet.io", check=False,
        ),
    )  # fmt: skip
    cluster.kubectl("create", "namespace", NAMESPACE)
    retry(
        "listing sipconferences",
        lambda: cluster.kubectl("get", "sipconferences", "-A", check=False),
    )
    yield cluster
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def apply(cluster: Cluster, text: str) -> tuple[int, str]:
    result = cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=text, check=False)
    return result.returncode, result.stdout + result.stderr


BAD_OBJECTS = [
    (conference("bad-uri", uri="http://conf3@example.com"), "spec.uri", "sip: or sips: URI"),
    (conference("no-user", uri="sip:example.com"), "spec.uri", "sip: or sips: URI"),
    (
        fleet("min-max", minNodes=5, maxNodes=2),
        "spec.minNodes",
        "less than or equal to maxNodes",
    ),
    (fleet("neg-max", maxNodes=-1), "spec.maxNodes", "greater than or equal to 0"),
    (
        conference("neg-cooldown", scaling={"cooldownSeconds": -1}),
        "spec.scaling.cooldownSeconds",
        "greater than or equal to 0",
    ),
    (
        conference("neg-window", scaling={"scaleDownStabilizationSeconds": -5}),
        "spec.scaling.scaleDownStabilizationSeconds",
        "greater than or equal to 0",
    ),
    (
        conference("slow", scaling={"intervalSeconds": 61}),
        "spec.scaling.intervalSeconds",
        "less than or equal to 60",
    ),
    (
        conference("teleport", transfer={"mode": "teleport"}),
        "spec.transfer.mode",
        'supported values: "redirect-only", "refer", "refer-to-server"',
    ),
    (
        conference("load", scaling={"targetLoad": 0.9, "highWatermark": 0.5}),
        "spec.scaling.targetLoad",
        "less than or equal to highWatermark",
    ),
    (
        conference("md5-first", access={"algorithms": ["MD5", "SHA-256"]}),
        "spec.access.algorithms",
        "algorithms must be [SHA-256], [SHA-256, MD5] or [MD5]",
    ),
    (
        conference("not-an-aor", access={"policy": "allowlist", "allow": ["alice"]}),
        "spec.access.allow[0]",
        "should match",
    ),
    (
        conference("loud", senderDisplay="loud"),
        "spec.senderDisplay",
        'supported values: "auto", "cpim", "display-name", "prefix"',
    ),
    (
        conference("zero-cap", capacity={"membersPerServer": 0}),
        "spec.capacity.membersPerServer",
        "greater than or equal to 1",
    ),
    (
        fleet("ports", mainServer={"domain": "example.com", "adminPort": 5060}),
        "spec.mainServer.adminPort",
        "sipPort and adminPort must differ",
    ),
    (
        fleet("domain", mainServer={"domain": "Not A Domain"}),
        "spec.mainServer.domain",
        "should match",
    ),
    (
        fleet("wss-no-cert", websocket={"wssPort": 8443}),
        "spec.websocket.wssPort",
        "websocket.wssPort needs tls.secretName",
    ),
    (
        fleet("tls-ports", tls={"secretName": "cert"}, nodeTemplate={"sipPort": 5070}),
        "spec.tls.secretName",
        "mainServer.sipPort and nodeTemplate.sipPort must be equal",
    ),
    (
        manifest("SipConference", "no-fleet", {"uri": "sip:a@example.com"}),
        "spec.fleetRef",
        "Required",
    ),
]


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [pytest.param(*case, id=yaml.safe_load(case[0])["metadata"]["name"]) for case in BAD_OBJECTS],
)
def test_api_server_rejects_bad_objects_naming_the_field(
    crds: Cluster, text: str, field: str, message: str
) -> None:
    code, output = apply(crds, text)
    assert code != 0, output
    assert f"{field}:" in output, output
    assert message in output, output


def test_examples_are_accepted_and_defaulted(crds: Cluster) -> None:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        code, output = apply(crds, path.read_text())
        assert code == 0, f"{path.name}: {output}"
    conf = json.loads(
        crds.kubectl("get", "-n", NAMESPACE, "sipconference", "conf3", "-o", "json").stdout
    )
    assert conf["spec"]["transfer"] == {"mode": "refer", "membersPerSecond": 50}
    assert conf["spec"]["scaling"]["maxNodesPerStep"] == 2
    small = json.loads(crds.kubectl("get", "-n", NAMESPACE, "sf", "small", "-o", "json").stdout)
    assert small["spec"]["nodeTemplate"]["image"] == "sipfleet/node:0.1.0"
    assert small["spec"]["metrics"]["staleAfterSeconds"] == 30


def test_uri_is_immutable(crds: Cluster) -> None:
    code, output = apply(crds, conference("fixed", uri="sip:fixed@example.com"))
    assert code == 0, output
    result = crds.kubectl(
        "patch", "-n", NAMESPACE, "sipconference", "fixed", "--type=merge",
        "-p", '{"spec": {"uri": "sip:other@example.com"}}', check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "spec.uri" in result.stderr and "uri is immutable" in result.stderr


def test_printer_columns_show_status(crds: Cluster) -> None:
    code, output = apply(crds, conference("shown", uri="sip:shown@example.com"))
    assert code == 0, output
    status = {"status": {"members": 42, "servers": 3, "phase": "Scaling"}}
    crds.kubectl(
        "patch", "-n", NAMESPACE, "sipconference", "shown", "--subresource=status",
        "--type=merge", "-p", json.dumps(status),
    )  # fmt: skip
    table = crds.kubectl("get", "-n", NAMESPACE, "sipconf", "shown").stdout.splitlines()
    assert table[0].split() == ["NAME", "URI", "MEMBERS", "SERVERS", "PHASE", "AGE"]
    assert table[1].split()[:5] == ["shown", "sip:shown@example.com", "42", "3", "Scaling"]
    code, output = apply(crds, fleet("columns"))
    assert code == 0, output
    header = crds.kubectl("get", "-n", NAMESPACE, "sf", "columns").stdout.splitlines()[0]
    assert header.split() == ["NAME", "NODES", "READY", "UPDATED", "AGE"]
    wide = crds.kubectl("get", "-n", NAMESPACE, "sf", "columns", "-o", "wide").stdout
    assert wide.splitlines()[0].split() == [
        "NAME", "DOMAIN", "NODES", "READY", "UPDATED", "ENTRY", "AGE"
    ]  # fmt: skip
    both = crds.kubectl("get", "-n", NAMESPACE, "sip", "-o", "name").stdout.split()
    assert "sipconference.sipfleet.io/shown" in both and "sipfleet.sipfleet.io/columns" in both


def test_kubectl_explain_shows_descriptions(crds: Cluster) -> None:
    text = retry(
        "kubectl explain",
        lambda: crds.kubectl("explain", "sipconference.spec.scaling", check=False),
    )
    assert "Fraction of capacity to keep in use" in text
    assert "scaleDownStabilizationSeconds" in text
    assert "Default: 60." in text
    text = retry("kubectl explain", lambda: crds.kubectl("explain", "sipfleet.spec", check=False))
    assert "Nodes each conference keeps even when idle" in text
