"""The CRD YAML is generated from the models and structural."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sipfleet.operator import crdgen
from sipfleet.operator.models import CONFERENCE, FLEET, RESOURCES, CrdModel

CRDS = Path(__file__).parents[3] / "crds"


def test_committed_crds_match_the_models() -> None:
    diffs = crdgen.check(CRDS)
    assert diffs == [], "run `python -m sipfleet.operator.crdgen`:\n" + "".join(diffs)


def test_check_exits_non_zero_with_a_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0
    path = tmp_path / "sipfleet.io_sipconferences.yaml"
    path.write_text(path.read_text().replace("targetLoad", "targetLoads"))
    capsys.readouterr()
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    out = capsys.readouterr()
    assert "-                  targetLoads:" in out.out
    assert "out of date" in out.err


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_schema_is_structural_and_described(resource: Any) -> None:
    schema = crdgen.openapi_schema(resource)
    for path, node in walk(schema):
        assert "$ref" not in node and "$defs" not in node and "title" not in node, path
        assert "anyOf" not in node or node.get("x-kubernetes-int-or-string"), path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        if path and path != ".metadata" and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description"
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True, path
        assert node.get("default", 0) is not None, path


def test_cel_rules_and_defaults_land_where_they_belong() -> None:
    spec = crdgen.openapi_schema(CONFERENCE)["properties"]["spec"]
    uri_rules = [r["rule"] for r in spec["properties"]["uri"]["x-kubernetes-validations"]]
    assert uri_rules[0].startswith('self.matches("^sips?:')
    assert "self == oldSelf" in uri_rules
    scaling = spec["properties"]["scaling"]
    assert scaling["x-kubernetes-validations"][0]["rule"] == "self.targetLoad <= self.highWatermark"
    # the object default is spelled out so it passes its own CEL rule
    assert scaling["default"]["targetLoad"] == 0.8
    assert scaling["properties"]["targetLoad"]["minimum"] == 0.0
    assert scaling["properties"]["intervalSeconds"]["maximum"] == 60
    mode = spec["properties"]["transfer"]["properties"]["mode"]
    assert mode["enum"] == ["redirect-only", "refer", "refer-to-server"]
    assert 'Default: "refer".' in mode["description"]
    fleet = crdgen.openapi_schema(FLEET)["properties"]["spec"]
    assert fleet["x-kubernetes-validations"][0]["rule"] == "self.minNodes <= self.maxNodes"
    quantity = fleet["properties"]["nodeTemplate"]["properties"]["resources"]["properties"]
    assert quantity["limits"]["additionalProperties"]["x-kubernetes-int-or-string"] is True


def test_crd_names_columns_and_status_subresource() -> None:
    conf = yaml.safe_load((CRDS / "sipfleet.io_sipconferences.yaml").read_text())
    assert conf["metadata"]["name"] == "sipconferences.sipfleet.io"
    assert conf["spec"]["names"]["shortNames"] == ["sipconf"]
    assert conf["spec"]["names"]["categories"] == ["sip"]
    version = conf["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["URI", "Members", "Servers", "Phase", "Age"]
    fleet = yaml.safe_load((CRDS / "sipfleet.io_sipfleets.yaml").read_text())
    assert fleet["spec"]["names"]["shortNames"] == ["sf"]
    columns = [c["name"] for c in fleet["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert [c for c in columns if c != "Domain"] == ["Nodes", "Ready", "Updated", "Entry", "Age"]
    entry = fleet["spec"]["versions"][0]["additionalPrinterColumns"][4]
    assert (entry["jsonPath"], entry["priority"]) == (".status.entryPoint", 1)  # -o wide


def test_a_field_without_description_is_an_error() -> None:
    class Bad(CrdModel):
        x: int = 1

    with pytest.raises(crdgen.SchemaError, match=r"\.spec\.x: every field needs a description"):
        crdgen.structural(Bad.model_json_schema(by_alias=True), {}, ".spec")


def test_an_untyped_union_is_an_error() -> None:
    class Bad(CrdModel):
        """Doc."""

        x: int | list[int] = 1

    with pytest.raises(crdgen.SchemaError, match="cannot express anyOf"):
        crdgen.structural(Bad.model_json_schema(by_alias=True), {}, ".spec")
