"""The OpenAPI 3.1 document, built from the operation records and the pydantic bodies."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from desk.api.operation import Operation
from desk.api.schemas import ErrorOut, HealthOut
from desk.appeals.customers import SPACE
from desk.config.settings import Settings, categories_of, stages_of

REF = "#/components/schemas/{model}"
_REASONS = {
    400: "Bad request",
    401: "Missing or unknown token",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Body too large",
    422: "Invalid fields",
    429: "Too many requests from this address, or overall: try again after Retry-After",
}


def _schema(model: type[BaseModel], components: dict[str, Any], mode: str) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
    for name, definition in schema.pop("$defs", {}).items():
        _component(components, name, definition)
    _component(components, model.__name__, schema)
    return {"$ref": REF.format(model=model.__name__)}


def _component(components: dict[str, Any], name: str, definition: dict[str, Any]) -> None:
    """Add a named schema; two different schemas of one name would describe one of them
    wrongly (the second silently replaced or dropped), so that is an error."""
    known = components.setdefault(name, definition)
    if known != definition:
        raise ValueError(f"two different schemas are named {name}: give the models distinct names")


def openapi_document(ops: list[Operation], settings: Settings) -> dict[str, Any]:
    """The whole document served at ``/api/v1/openapi.json``."""
    components: dict[str, Any] = {}
    error_ref = _schema(ErrorOut, components, "serialization")
    paths: dict[str, Any] = {}
    for op in ops:
        operation: dict[str, Any] = {
            "summary": op.summary,
            "operationId": op.handler.__name__,
            "responses": {},
        }
        params = [_param(p, "query") for p in op.query] + [_param(p, "header") for p in op.headers]
        names = re.findall(r"{(\w+)}", op.path)
        params += [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
        ]
        if params:
            operation["parameters"] = params
        if op.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": _schema(op.body, components, "validation")}
                },
            }
        responses = {op.status: op.response, **op.extra_responses}
        for status, model in responses.items():
            content = (
                {"application/json": {"schema": _schema(model, components, "serialization")}}
                if model
                else {}
            )
            if status == op.status:
                content |= {m: {"schema": {"type": "string"}} for m in op.media}
            operation["responses"][str(status)] = {
                "description": "Success",
                **({"content": content} if content else {}),
            }
            if status == op.status and op.links:
                operation["responses"][str(status)]["links"] = {
                    name: {"operationId": link.operation, "parameters": link.parameters}
                    for name, link in op.links.items()
                }
        for status in op.errors:
            operation["responses"][str(status)] = {
                "description": _REASONS.get(status, "Error"),
                "content": {"application/json": {"schema": error_ref}},
            }
            if status == 429:
                operation["responses"]["429"]["headers"] = {
                    "Retry-After": {
                        "description": "seconds to wait",
                        "schema": {"type": "integer", "minimum": 1},
                    }
                }
        if op.auth:
            operation["security"] = [{"bearer": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    paths["/healthz"] = {
        "get": {
            "summary": "Liveness",
            "operationId": "healthz",
            "responses": {
                "200": {
                    "description": "Alive",
                    "content": {
                        "application/json": {
                            "schema": _schema(HealthOut, components, "serialization")
                        }
                    },
                }
            },
        }
    }
    _known_stages(components, settings)
    _known_categories(components, settings)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Appeal Desk API",
            "version": "1",
            "description": "Customer appeals from every channel in one stream.",
        },
        "servers": [{"url": settings.effective_public_url()}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _known_stages(components: dict[str, Any], settings: Settings) -> None:
    """An order's ``stage`` must be a configured one (else 422): the document says which, as
    the server checks it (on the value as sent, spaces around it allowed)."""
    names = "|".join(re.escape(name) for name in stages_of(settings))
    for model in ("OrderIn", "StageIn"):
        field = components.get(model, {}).get("properties", {}).get("stage")
        for schema in field.get("anyOf", [field]) if field else []:
            if schema.get("type") == "string":
                schema["pattern"] = rf"^[{SPACE}]*(?:{names})[{SPACE}]*$"


def _known_categories(components: dict[str, Any], settings: Settings) -> None:
    """A category or team named in a body must be a configured one (else 422 naming them):
    the document lists them."""
    known = {
        "category": [c.id for c in categories_of(settings)],
        "team": [t.id for t in settings.teams],
    }
    for model in ("AppealChangeIn", "TransferIn"):
        for name, values in known.items():
            field = components.get(model, {}).get("properties", {}).get(name)
            for schema in field.get("anyOf", [field]) if field else []:
                if schema.get("type") == "string":
                    if values:
                        schema["enum"] = values
                    else:  # none configured: no value is valid
                        schema["not"] = {}


def _param(p: Any, where: str) -> dict[str, Any]:
    return {
        "name": p.name,
        "in": where,
        "required": False,
        "schema": p.schema,
        **({"description": p.description} if p.description else {}),
    }
