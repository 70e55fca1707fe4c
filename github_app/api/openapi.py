"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json. A schemathesis run in the
tests calls every operation with generated input and checks each answer against this description."""

from __future__ import annotations

from functools import cache
from typing import Any

from github_app import __version__


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


STR = {"type": "string"}
NSTR = {"type": ["string", "null"]}
TIME = {"type": ["string", "null"], "format": "date-time"}
INT = {"type": "integer"}


def _obj(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties, "additionalProperties": False}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: str) -> dict[str, Any]:
    return _obj({"data": {"type": "array", "items": _ref(item)}, "nextCursor": NSTR})


SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "error": _obj(
                {
                    "code": {
                        "type": "string",
                        "enum": [
                            "unauthorized",
                            "forbidden",
                            "not_found",
                            "invalid_request",
                            "rate_limited",
                            "conflict",
                            "method_not_allowed",
                            "http_error",
                            "internal",
                        ],
                    },
                    "message": STR,
                }
            )
        }
    ),
    "Person": _nullable(_obj({"id": STR, "name": NSTR, "githubUsername": NSTR})),
    "Project": _obj(
        {
            "id": STR,
            "name": STR,
            "status": STR,
            "repository": NSTR,
            "repositoryUrl": NSTR,
            "currentStage": NSTR,
            "createdAt": TIME,
        }
    ),
    "EscrowSummary": _nullable(_obj({"id": STR, "status": STR, "amount": STR, "currency": STR, "blockchain": STR})),
    "Release": _nullable(
        _obj(
            {
                "id": STR,
                "state": {"type": "string", "enum": ["pending", "releasing", "released", "failed", "cancelled"]},
                "attempts": INT,
                "waitingFor": NSTR,
                "lastError": NSTR,
                "transactionUrl": NSTR,
                "requestedAt": TIME,
                "releasedAt": TIME,
            }
        )
    ),
    "Story": _obj(
        STORY := {
            "id": STR,
            "projectId": STR,
            "number": STR,
            "title": STR,
            "status": STR,
            "developer": _ref("Person"),
            "qa": _ref("Person"),
            "gate": _obj({"status": NSTR, "accepted": {"type": "boolean"}, "reviewedAt": TIME, "reviewCount": INT}),
            "pullRequest": _nullable(_obj({"number": INT, "url": NSTR})),
            "escrow": _ref("EscrowSummary"),
            "updatedAt": TIME,
        }
    ),
    "Deliverable": _obj(
        {
            "id": STR,
            "stage": STR,
            "status": STR,
            "pullRequest": _obj({"number": INT, "url": STR, "author": STR}),
            "submittedAt": TIME,
            "reviewedAt": TIME,
            "approvedAt": TIME,
        }
    ),
    "AuditEntry": _obj(
        {
            "id": STR,
            "action": STR,
            "fromStatus": NSTR,
            "toStatus": NSTR,
            "actor": _ref("Person"),
            "metadata": {},
            "createdAt": TIME,
        }
    ),
    "Transaction": _obj(
        {
            "kind": {"type": "string", "enum": ["release", "refund"]},
            "chain": STR,
            "hash": STR,
            "state": {"type": "string", "enum": ["signed", "confirmed", "reverted", "dropped"]},
            "error": NSTR,
            "signedAt": TIME,
            "confirmedAt": TIME,
        }
    ),
    "Delivery": _obj(
        {
            "id": STR,
            "event": STR,
            "action": NSTR,
            "repository": NSTR,
            "state": {"type": "string", "enum": ["pending", "processing", "done", "dead"]},
            "attempts": INT,
            "receivedAt": TIME,
            "nextAttemptAt": TIME,
            "lastError": NSTR,
        }
    ),
    "ProjectPage": _page("Project"),
    "StoryPage": _page("Story"),
    "DeliveryPage": _page("Delivery"),
}

SCHEMAS["StoryDetail"] = _obj(
    {
        **STORY,
        "deliverables": {"type": "array", "items": _ref("Deliverable")},
        "release": _ref("Release"),
        "auditLog": {"type": "array", "items": _ref("AuditEntry")},
        "auditLogTruncated": {"type": "boolean"},
    }
)
SCHEMAS["Escrow"] = _obj(
    {
        "id": STR,
        "status": STR,
        "amount": STR,
        "currency": STR,
        "blockchain": STR,
        "projectId": STR,
        "opportunityId": NSTR,
        "clientId": STR,
        "expertId": STR,
        "platformFeeBps": INT,
        "contractAddress": STR,
        "fundingTransaction": NSTR,
        "releaseTransaction": NSTR,
        "fundedAt": TIME,
        "releasedAt": TIME,
        "createdAt": TIME,
        "release": _ref("Release"),
        "transactions": {"type": "array", "items": _ref("Transaction")},
    }
)


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _ok(description: str, schema: str, status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}}


def _retry_after() -> dict[str, Any]:
    return {
        "description": "Too many requests for this key",
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": _ref("Error")}},
    }


COMMON = {
    "400": _error("A query parameter is invalid"),
    "401": _error("Missing, wrong or revoked API key"),
    "429": _retry_after(),
}
PAGING = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "`nextCursor` of the previous page",
        "schema": {"type": "string", "pattern": "^([0-9a-f]{2}){1,300}$"},
    },
]


def _id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


@cache
def spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bmad-marketplace-app API",
            "version": __version__,
            "description": "Projects, stories and escrows as the GitHub App sees them; operator endpoints for "
            "webhook deliveries (admin keys). Lists are paged by cursor: pass `nextCursor` back as `cursor`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
        "paths": {
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This description",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
                }
            },
            "/api/v1/projects": {
                "get": {
                    "operationId": "listProjects",
                    "summary": "The projects the key's user is tied to",
                    "parameters": PAGING,
                    "responses": {**_ok("A page of projects", "ProjectPage"), **COMMON},
                }
            },
            "/api/v1/projects/{projectId}/stories": {
                "get": {
                    "operationId": "listStories",
                    "summary": "A project's stories: status, developer, QA, gate and escrow",
                    "parameters": [_id("projectId"), *PAGING],
                    "responses": {
                        **_ok("A page of stories", "StoryPage"),
                        **COMMON,
                        "404": _error("No such project for this key"),
                    },
                }
            },
            "/api/v1/stories/{storyId}": {
                "get": {
                    "operationId": "getStory",
                    "summary": "A story with its deliverables, release and audit log",
                    "parameters": [_id("storyId")],
                    "responses": {
                        **_ok("The story", "StoryDetail"),
                        "401": COMMON["401"],
                        "429": COMMON["429"],
                        "404": _error("No such story for this key"),
                    },
                }
            },
            "/api/v1/escrows/{escrowId}": {
                "get": {
                    "operationId": "getEscrow",
                    "summary": "An escrow with its release and its signed transactions",
                    "parameters": [_id("escrowId")],
                    "responses": {
                        **_ok("The escrow", "Escrow"),
                        "401": COMMON["401"],
                        "429": COMMON["429"],
                        "404": _error("No such escrow for this key"),
                    },
                }
            },
            "/api/v1/deliveries": {
                "get": {
                    "operationId": "listDeliveries",
                    "summary": "Webhook deliveries in the inbox (admin keys)",
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["pending", "processing", "done", "dead"]},
                        },
                        *PAGING,
                    ],
                    "responses": {
                        **_ok("A page of deliveries", "DeliveryPage"),
                        **COMMON,
                        "403": _error("Not an admin key"),
                    },
                }
            },
            "/api/v1/deliveries/{deliveryId}/retry": {
                "post": {
                    "operationId": "retryDelivery",
                    "summary": "Process a delivery again, with fresh attempts (admin keys)",
                    "parameters": [_id("deliveryId")],
                    "responses": {
                        **_ok("Queued for processing", "Delivery", "202"),
                        "401": COMMON["401"],
                        "403": _error("Not an admin key"),
                        "404": _error("No such delivery"),
                        "409": _error("Being processed right now"),
                        "429": COMMON["429"],
                    },
                }
            },
        },
    }
