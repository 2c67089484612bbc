"""The OpenAPI 3.1 document served at /openapi.json."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json(_ref("Error"), "Invalid input"),
    "401": _json(_ref("Error"), "Missing or wrong bearer token"),
    "404": _json(_ref("Error"), "Unknown group or transfer"),
    "409": _json(_ref("Error"), "Conflicts with the current state"),
}
_GROUP = {"type": "string", "pattern": "^sip:", "example": "sip:conf3@example.com"}
_SHARD = {
    "type": "object",
    "required": ["group", "uri", "members", "capacity", "draining"],
    "properties": {
        "group": _GROUP,
        "uri": {"type": "string", "description": "shard URI: sip:<group user>-<server>@host:port"},
        "members": {"type": "integer"},
        "capacity": {"type": "integer"},
        "draining": {"type": "boolean"},
        "member_uris": {"type": "array", "items": {"type": "string"}},
    },
}
_ROUTE_ENTRY = {
    "type": "object",
    "required": ["server", "uri"],
    "properties": {
        "server": {"type": "string"},
        "uri": {"type": "string"},
        "state": {"enum": ["active", "draining"], "default": "active"},
        "free": {"type": "integer", "default": 0},
    },
}
_ROUTES = {
    "type": "object",
    "required": ["generation", "groups"],
    "properties": {
        "generation": {"type": "integer", "minimum": 0},
        "groups": {
            "type": "object",
            "description": "group URI -> ordered server list; entry 0 is the tree root (main); "
            "children of entry i are entries k*i+1..k*i+k (k = tree fanout)",
            "additionalProperties": {"type": "array", "items": _ROUTE_ENTRY, "minItems": 1},
        },
    },
}
_TRANSFER_REQUEST = {
    "type": "object",
    "required": ["group", "target"],
    "properties": {
        "group": _GROUP,
        "target": {"type": "string", "description": "shard URI to move members to"},
        "count": {"type": "integer", "minimum": 1},
        "members": {"type": "array", "items": {"type": "string"}},
        "method": {"enum": ["refer", "refer-to-server"], "default": "refer"},
        "rate": {"type": "number", "default": 50.0, "description": "REFERs per second"},
    },
    "description": "exactly one of count or members",
}
_TRANSFER = {
    "type": "object",
    "required": ["id", "group", "target", "method", "requested", "moved", "failed", "state"],
    "properties": {
        "id": {"type": "string"},
        "group": _GROUP,
        "target": {"type": "string"},
        "method": {"enum": ["refer", "refer-to-server"]},
        "requested": {"type": "integer"},
        "moved": {"type": "integer"},
        "failed": {"type": "integer"},
        "state": {"enum": ["running", "done", "failed"]},
    },
}
_STATE = {
    "type": "object",
    "required": ["name", "role", "domain", "sip", "draining", "routes_generation", "shards"],
    "properties": {
        "name": {"type": "string"},
        "role": {"enum": ["main", "node"]},
        "domain": {"type": "string"},
        "sip": {
            "type": "object",
            "properties": {"host": {"type": "string"}, "port": {"type": "integer"}},
        },
        "draining": {"type": "boolean"},
        "routes_generation": {"type": "integer"},
        "shards": {"type": "array", "items": _ref("Shard")},
        "routes": _ref("Routes"),
    },
}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]
_ACCESS = {
    "type": "object",
    "description": "who may join, post and read the roster (docs/security.md); "
    "absent: the server's --default-policy",
    "properties": {
        "policy": {"type": "string", "enum": ["open", "authenticated", "allowlist"]},
        "allow": {"type": "array", "items": {"type": "string", "pattern": "^sip:[^@]+@.+"}},
        "algorithms": {"type": "array", "items": {"type": "string", "enum": ["SHA-256", "MD5"]}},
    },
}


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
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            },
            "Shard": _SHARD,
            "Routes": _ROUTES,
            "Transfer": _TRANSFER,
            "State": _STATE,
            "TransferRequest": _TRANSFER_REQUEST,
        },
    },
    "paths": {
        "/healthz": {"get": _op("Liveness", {"200": _json({"type": "object"})}, public=True)},
        "/readyz": {
            "get": _op(
                "200 once the SIP listeners are up, else 503",
                {"200": _json({"type": "object"}), "503": _json(_ref("Error"), "Not ready")},
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
            "get": _op("Server state, shards and member counts", {"200": _json(_ref("State"))})
        },
        "/v1/shards": {
            "post": _op(
                "Create the group's shard here if it does not exist (idempotent); "
                "a new capacity replaces the old one",
                {"200": _json(_ref("Shard"), "Exists"), "201": _json(_ref("Shard"), "Created")},
                {
                    "type": "object",
                    "required": ["group", "capacity"],
                    "properties": {
                        "group": _GROUP,
                        "capacity": {"type": "integer", "minimum": 1},
                        "access": _ACCESS,
                    },
                },
            ),
            "delete": _op(
                "Delete the shard; remaining members get a BYE",
                {"200": _json(_ref("Shard"))},
                {"type": "object", "required": ["group"], "properties": {"group": _GROUP}},
            ),
        },
        "/v1/routes": {
            "get": _op("The current routing table", {"200": _json(_ref("Routes"))}),
            "put": _op(
                "Replace the routing table; lower generation -> 409, equal -> no-op",
                {"200": _json({"type": "object"})},
                _ref("Routes"),
            ),
        },
        "/v1/transfers": {
            "post": _op(
                "Start moving members to another shard",
                {"202": _json(_ref("Transfer"), "Started")},
                _ref("TransferRequest"),
            ),
            "get": _op(
                "All transfers", {"200": _json({"type": "array", "items": _ref("Transfer")})}
            ),
        },
        "/v1/transfers/{id}": {
            "get": {
                **_op("One transfer", {"200": _json(_ref("Transfer"))}),
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            },
        },
        "/v1/drain": {
            "post": _op(
                "Stop taking joins (302 elsewhere); members stay until transferred",
                {"200": _json(_ref("State"))},
                {"type": "object"},
            )
        },
    },
}
