"""The OpenAPI 3.1 document served at /openapi.json.

Its schemas are generated from the admin contract (admin_types.py), the same
types the server validates with and the client returns, so the document cannot
drift from the code; the paths below only name them.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema
from sipfleet.node import admin_types as types

_REF = "#/components/schemas/{model}"
_MODELS: list[Any] = [
    types.ErrorBody,
    types.GroupRef,
    types.NodeState,
    types.Routes,
    types.RoutesAck,
    types.ShardRequest,
    types.ShardState,
    types.Status,
    types.TransferRequest,
    types.TransferState,
]


def _schemas() -> dict[str, Any]:
    """Every contract type's JSON schema (requests as validated, responses as sent)."""
    _, top = models_json_schema(
        [(m, "validation") for m in _MODELS], ref_template=_REF, title="sipfleet-node admin"
    )
    schemas: dict[str, Any] = top["$defs"]
    return schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json(_ref("ErrorBody"), "Invalid input"),
    "401": _json(_ref("ErrorBody"), "Missing or wrong bearer token"),
    "404": _json(_ref("ErrorBody"), "Unknown group or transfer"),
    "409": _json(_ref("ErrorBody"), "Conflicts with the current state"),
}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def _op(
    summary: str,
    responses: dict[str, Any],
    body: dict[str, Any] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if not public:
        op["security"] = _SECURED
        op["responses"] = {**responses, **_ERRORS}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "sipfleet-node admin API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": _schemas(),
    },
    "paths": {
        "/healthz": {"get": _op("Liveness", {"200": _json(_ref("Status"))}, public=True)},
        "/readyz": {
            "get": _op(
                "200 once the SIP listeners are up, else 503",
                {"200": _json(_ref("Status")), "503": _json(_ref("ErrorBody"), "Not ready")},
                public=True,
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics (sipfleet_node_*)",
                {"200": {"description": "Prometheus text format"}},
                public=True,
            )
        },
        "/openapi.json": {
            "get": _op("This document", {"200": _json({"type": "object"})}, public=True)
        },
        "/v1/state": {
            "get": _op("Server state, shards and member counts", {"200": _json(_ref("NodeState"))})
        },
        "/v1/shards": {
            "post": _op(
                "Create the group's shard here if it does not exist (idempotent); "
                "a new capacity replaces the old one",
                {
                    "200": _json(_ref("ShardState"), "Exists"),
                    "201": _json(_ref("ShardState"), "Created"),
                },
                _ref("ShardRequest"),
            ),
            "delete": _op(
                "Delete the shard; remaining members get a BYE",
                {"200": _json(_ref("ShardState"))},
                _ref("GroupRef"),
            ),
        },
        "/v1/routes": {
            "get": _op("The current routing table", {"200": _json(_ref("Routes"))}),
            "put": _op(
                "Replace the routing table; lower generation -> 409, equal -> no-op",
                {"200": _json(_ref("RoutesAck"))},
                _ref("Routes"),
            ),
        },
        "/v1/transfers": {
            "post": _op(
                "Start moving members to another shard",
                {"202": _json(_ref("TransferState"), "Started")},
                _ref("TransferRequest"),
            ),
            "get": _op(
                "All transfers",
                {"200": _json({"type": "array", "items": _ref("TransferState")})},
            ),
        },
        "/v1/transfers/{id}": {
            "get": {
                **_op("One transfer", {"200": _json(_ref("TransferState"))}),
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            },
        },
        "/v1/drain": {
            "post": _op(
                "Stop taking joins (302 elsewhere); members stay until transferred",
                {"200": _json(_ref("NodeState"))},
                {"type": "object"},
            )
        },
    },
}
