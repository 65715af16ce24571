"""Each published app's task operations in the OpenAPI schema, typed by its declared identifiers.

A drf-spectacular postprocessing hook (``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``): for the
latest version of every app the schema's reader may use, one operation per solve procedure at
``/api/v1/apps/<app>/tasks/<procedure>``, whose request names the inputs (sets, scalars, tables
with their index sets, types and bounds) and whose 200 answer names the outputs. An integrator's
code generator then sees ``transport.solve`` as a typed call, not a free-form dictionary.
"""

from __future__ import annotations

from typing import Any

from apps.catalog.models import AppVersion
from apps.catalog.selectors import catalogue_for_user

SCALAR_TYPES = {"float": "number", "int": "integer", "bool": "boolean", "str": "string"}


def add_app_tasks(result: dict, generator: Any, request: Any, public: bool) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return result  # who may run what is not for strangers to read
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    listed = [
        (app, next((v for v in versions if v.is_latest), versions[0])) for app, versions in catalogue_for_user(user)
    ]
    # The lists read no manifests: the latest versions' are read here, in one query.
    manifests = dict(AppVersion.objects.filter(pk__in=[v.pk for _, v in listed]).values_list("pk", "manifest"))
    for app, latest in listed:
        interface = manifests.get(latest.pk, {}).get("interface", {})
        for procedure in interface.get("procedures", []):
            if procedure.get("kind") != "solve":
                continue
            name = f"{_component(app.name)}{_component(procedure['name'])}"
            schemas[f"{name}Input"] = _object(i for i in interface.get("identifiers", []) if i.get("kind") != "output")
            schemas[f"{name}Outputs"] = _object(
                i for i in interface.get("identifiers", []) if i.get("kind") == "output"
            )
            schemas[f"{name}Task"] = _request(name)
            path = f"/api/v1/apps/{app.name}/tasks/{procedure['name']}"
            result.setdefault("paths", {})[path] = {"post": _operation(app, latest.version, procedure, name)}
    return result


def _component(text: str) -> str:
    return "".join(part.capitalize() for part in text.replace("-", "_").split("_"))


def _operation(app: Any, version: str, procedure: dict, name: str) -> dict:
    answer = {
        "type": "object",
        "properties": {
            "job": {"$ref": "#/components/schemas/Job"},
            "state": {"type": "string"},
            "outputs": {"$ref": f"#/components/schemas/{name}Outputs"},
            "error": {"type": "string"},
            "url": {"type": "string"},
        },
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "operationId": f"task_{app.name.replace('-', '_')}_{procedure['name']}",
        "summary": f"{app.title or app.name}: {procedure.get('title') or procedure['name']}",
        "description": f"Runs {procedure['name']} of {app.name} (its latest version, {version}) as a job of the caller.",
        "tags": ["tasks"],
        "parameters": [{"in": "query", "name": "wait", "schema": {"type": "number"}}],
        "requestBody": {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}Task"}}}},
        "responses": {
            "200": {
                "description": "The job ended within the wait",
                "content": {"application/json": {"schema": answer}},
            },
            "202": {"description": "The job is queued or running", "content": {"application/json": {"schema": answer}}},
            **{
                code: {"description": "Refused", "content": error}
                for code in ("400", "401", "403", "404", "409", "429")
            },
        },
        "security": [{"bearerAuth": []}, {}],
    }


def _request(name: str) -> dict:
    return {
        "type": "object",
        "properties": {
            "input": {"$ref": f"#/components/schemas/{name}Input"},
            "version": {"type": "string"},
            "priority": {"type": "integer", "minimum": -100, "maximum": 100},
            "time_limit": {"type": "number", "minimum": 0.1},
            "memory_limit_mb": {"type": "integer", "minimum": 64},
            "webhook_url": {"type": "string", "format": "uri", "description": "Each state change POSTed there, signed"},
            "notify_email": {"type": "boolean", "description": "E-mail the caller when the job ends"},
        },
        "additionalProperties": False,
    }


def _object(identifiers: Any) -> dict:
    return {
        "type": "object",
        "properties": {i["name"]: _identifier(i) for i in identifiers},
        "additionalProperties": False,
    }


def _identifier(identifier: dict) -> dict:
    described = {"title": identifier.get("title", identifier["name"]), "description": identifier.get("description", "")}
    if identifier.get("kind") == "set":
        return {**described, "type": "array", "items": {"type": "string"}, "uniqueItems": True}
    value: dict[str, Any] = {"type": SCALAR_TYPES.get(identifier.get("type", "float"), "number")}
    for bound in ("minimum", "maximum"):
        if identifier.get(bound) is not None:
            value[bound] = identifier[bound]
    index = identifier.get("index") or []
    if not index:
        return {**described, **value}
    width = len(index) + 1  # OpenAPI 3.0 has no tuples (prefixItems): elements then the value, by count
    row = {"type": "array", "items": {"anyOf": [{"type": "string"}, value]}, "minItems": width, "maxItems": width}
    return {**described, "type": "array", "items": row, "description": f"rows of [{', '.join(index)}, value]"}
