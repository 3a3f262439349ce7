"""``GET /v1/openapi.json`` (OpenAPI 3.1) built from the app's own route declarations,
and ``GET /docs`` (Swagger UI from the ``swagger-ui-py`` wheel, served by the engine).

The document walks the app's URL map: every rule's view carries the
:class:`~engine.http.routes.RouteSpec` it was declared with, and that spec (the very
objects the server validates requests with) becomes the operation: parameters, request
body, the success response, the error envelope for each error status, the auth schemes
and the scope (``x-required-scope``, also written into the description). It is built once
per app and cached.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

import orjson
from quart import Blueprint, Quart, Response, current_app

from engine import __version__
from engine.http.routes import JSON, RouteSpec, route
from engine.http.schemas import COMPONENTS, ERROR, FREE_FORM, STR, Schema, obj

bp = Blueprint("docs", __name__)

ERROR_TEXT = {
    400: "invalid_request (details.fields names each offending field), or another 400 code of the route",
    401: "unauthenticated: no credentials, or bad ones",
    403: "forbidden: the scope is missing, or the key may not use this dataset",
    404: "not_found: no such resource for this caller (another tenant's ids are never revealed)",
    405: "method_not_allowed",
    409: "conflict (e.g. idempotency_in_progress, a state that forbids the change)",
    413: "payload_too_large",
    422: "unprocessable (e.g. size_mismatch, checksum_mismatch, idempotency_key_reused)",
    429: "rate_limited",
    503: "unavailable: a dependency is down, or the service is stopping",
}
DESCRIPTION = """The IPTO ingestion engine's HTTP API (contract: API.md).

Every JSON answer is an envelope: `{"data": …, "request_id", "timestamp"}` on success,
`{"error": {code, message, details}, "request_id", "timestamp"}` on failure. Authenticate
with `Authorization: Bearer <session token>` (from `/v1/auth/login` or `/v1/auth/signup`)
or `X-API-Key: ipto_{prefix}_{secret}`; the scope each operation needs is in its
description and in `x-required-scope`. Every POST takes an `Idempotency-Key`.

Presigned upload and download URLs (`upload_url`, `download_url`) are not operations of
this document: they are handed out by it, take no credentials, and are signed for one
method, key, length and expiry."""


OPENAPI_DOCUMENT = obj({"openapi": STR, "info": FREE_FORM, "jsonSchemaDialect": STR, "servers": {"type": "array"},
                        "paths": FREE_FORM, "components": FREE_FORM})
OPENAPI_DOCUMENT["description"] = "this document (OpenAPI 3.1; its parts are described by the OpenAPI specification)"


def _path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _envelope(data: Schema | None) -> Schema:
    return {"type": "object", "properties": {"data": data if data is not None else {}, "request_id": {"type": "string"},
                                             "timestamp": {"type": "string", "format": "date-time"}},
            "required": ["data", "request_id", "timestamp"]}


def _error_statuses(spec: RouteSpec, path_params: list[str]) -> list[int]:
    statuses = set(spec.errors)
    if spec.body is not None or spec.query:
        statuses.add(400)
    if spec.body is not None and not spec.body.any_json:
        statuses.add(413)
    if not spec.public:
        statuses.add(401)
    if spec.scope is not None:
        statuses.add(403)
    if path_params:
        statuses.add(404)
    if spec.method == "POST" and not spec.public:
        statuses.update((409, 422))  # idempotency: in progress, key reused
    return sorted(statuses)


def _operation(spec: RouteSpec, path_params: list[str]) -> dict[str, Any]:
    description = spec.description
    if spec.scope:
        description = f"Scope: `{spec.scope}`.\n\n{description}".strip()
    elif not spec.public:
        description = f"Any authenticated caller.\n\n{description}".strip()
    op: dict[str, Any] = {"operationId": f"{spec.tag}.{spec.name}", "summary": spec.summary, "tags": [spec.tag]}
    if description:
        op["description"] = description
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True,
         "schema": spec.path_schemas.get(name, {"type": "string", "minLength": 1})} for name in path_params
    ]
    params += [{"name": q.name, "in": "query", "required": False, "schema": q.json_schema(),
                **({"description": q.description} if q.description else {})} for q in spec.query]
    if spec.method == "POST" and not spec.public:
        params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                       "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                       "description": "the first answer is replayed for 24 h (Idempotent-Replayed: true)"})
    if params:
        op["parameters"] = params
    if spec.body is not None:
        op["requestBody"] = {"required": not spec.body.optional,
                             "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{spec.body.name}"}}}}
    if spec.ok_content_type == JSON:
        ok_content: dict[str, Any] = {JSON: {"schema": _envelope(spec.ok_schema)}}
    else:
        types = (spec.ok_content_type,) if isinstance(spec.ok_content_type, str) else spec.ok_content_type
        ok_content = {t: {"schema": spec.ok_schema or {"type": "string"}} for t in types}
    responses: dict[str, Any] = {str(spec.ok_status): {"description": "success", "content": ok_content}}
    for status, schema in spec.also_ok.items():
        responses[str(status)] = {"description": "answered with data, as success is", "content": {JSON: {"schema": _envelope(schema)}}}
    for status in _error_statuses(spec, path_params):
        if status in spec.also_ok:
            continue
        responses[str(status)] = ({"$ref": f"#/components/responses/E{status}"} if status >= 400
                                  else {"description": "not modified (If-None-Match)"})
    responses["default"] = {"$ref": "#/components/responses/Error"}
    op["responses"] = responses
    if spec.public:
        op["security"] = []
    else:
        op["security"] = [{"bearer": []}, {"apiKey": []}] + ([{"consoleCookie": []}] if spec.cookie else [])
    if spec.scope:
        op["x-required-scope"] = spec.scope
    return op


def build_document(app: Quart) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared route of ``app``."""
    paths: dict[str, dict[str, Any]] = {}
    bodies: dict[str, Schema] = {}
    for rule in app.url_map.iter_rules():
        spec: RouteSpec | None = getattr(app.view_functions.get(rule.endpoint), "api_spec", None)
        if spec is None:
            continue  # undeclared (Quart's own static route): the route test names any other
        path = _path(rule.rule)
        paths.setdefault(path, {})[spec.method.lower()] = _operation(spec, list(rule.arguments and _ordered(rule.rule)))
        if spec.body is not None:
            bodies[spec.body.name] = spec.body.json_schema()
    responses = {f"E{status}": {"description": text, "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
                 for status, text in ERROR_TEXT.items()}
    responses["Error"] = {"description": "any other error, in the same envelope",
                          "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "IPTO ingestion engine", "version": __version__, "description": DESCRIPTION},
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {**COMPONENTS, "Error": ERROR, **dict(sorted(bodies.items()))},
            "responses": responses,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a session token from /v1/auth/login"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "ipto_{prefix}_{secret}"},
                "consoleCookie": {"type": "apiKey", "in": "cookie", "name": "ipto_console",
                                  "description": "the review console's session (state changes also need X-CSRF-Token)"},
            },
        },
    }


def _ordered(rule: str) -> list[str]:
    return re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule)


@route(bp, "GET", "/v1/openapi.json", summary="This document", public=True, ok=(200, OPENAPI_DOCUMENT),
       ok_content_type=(JSON,))  # a tuple: JSON that is the document itself, not an envelope
async def openapi_json() -> Response:
    """The OpenAPI 3.1 document of this API (no auth)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    body = app.extensions.get("openapi_document")
    if body is None:
        body = app.extensions["openapi_document"] = orjson.dumps(build_document(app))
    return Response(body, content_type="application/json", headers={"Cache-Control": "no-cache"})


# -- /docs ------------------------------------------------------------------------------
DOCS_ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
DOCS_PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>IPTO API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/swagger-ui-standalone-preset.js"></script>
<script src="/docs/static/init.js"></script>
</body>
</html>
"""
# Not inline: the page's CSP allows scripts from this origin only.
DOCS_INIT = b"""window.ui = SwaggerUIBundle({
  url: "/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout",
  persistAuthorization: false
});
"""


@functools.cache
def _asset(name: str) -> bytes:
    """A file of Swagger UI's wheel (``swagger-ui-py``), read once."""
    return (resources.files("swagger_ui") / "static" / name).read_bytes()


def _headers(content_type: str, cache: str) -> dict[str, str]:
    return {"Content-Type": content_type, "Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff",
            "Cache-Control": cache}


@route(bp, "GET", "/docs", summary="API docs page", public=True, ok=(200, {"type": "string"}), ok_content_type="text/html")
async def docs_page() -> Response:
    """Swagger UI reading /v1/openapi.json; its assets are served by the engine (no CDN)."""
    return Response(DOCS_PAGE, headers=_headers("text/html; charset=utf-8", "no-cache"))


@route(bp, "GET", "/docs/static/<name>", summary="API docs asset", public=True, ok=(200, {"type": "string"}),
       ok_content_type=("text/css", "text/javascript", "image/png"), errors=(404,),
       path_schemas={"name": {"type": "string", "enum": ["init.js", *DOCS_ASSETS]}})
async def docs_asset(name: str) -> Response:
    """One file of the docs page (Swagger UI's, from its wheel)."""
    if name == "init.js":
        return Response(DOCS_INIT, headers=_headers("text/javascript; charset=utf-8", "no-cache"))
    if name not in DOCS_ASSETS:
        from engine.errors import NotFound

        raise NotFound("no such docs file")
    return Response(_asset(name), headers=_headers(DOCS_ASSETS[name], "public, max-age=86400"))
