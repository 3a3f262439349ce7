"""Every JSON answer a route test receives, checked against ``/v1/openapi.json``, closed.

:func:`conforming_client` is an ``httpx.AsyncClient`` whose response hook finds the
operation of each request in the document (method and path template), takes the schema
the document gives for the answer's status (or ``default``), and validates the body with
``jsonschema`` (Draft 2020-12, the dialect of OpenAPI 3.1; ``date-time`` and other formats
checked). The document is *closed* first: every object that lists its properties gets
``additionalProperties: false``, so a field the engine sends and the document does not
name fails the test, as does a missing required field, a wrong type, a null where none is
allowed or a value outside an enum. Objects whose keys are data say so in the document
(``additionalProperties: true``) and stay open.

Requests the document does not describe (presigned blob URLs) and answers that are not
JSON (pages, images, Prometheus text) are let through unchecked.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema
import pytest

from engine.http.app import create_app
from engine.http.openapi import build_document
from engine.service import ServiceHandle
from engine.services import Services

METHODS = ("get", "put", "post", "patch", "delete")


def close(schema: Any) -> Any:
    """A deep copy of ``schema`` with every object that lists properties made closed."""
    if isinstance(schema, list):
        return [close(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: close(v) for k, v in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


def undocumented_objects(schema: Any, where: str = "") -> list[str]:
    """Places where a response schema says "an object" without naming its fields or saying
    its keys are data (``additionalProperties``): what the document must not hold."""
    found: list[str] = []
    if isinstance(schema, list):
        for i, s in enumerate(schema):
            found += undocumented_objects(s, f"{where}/{i}")
    elif isinstance(schema, dict):
        types = schema.get("type")
        is_object = types == "object" or (isinstance(types, list) and "object" in types)
        if is_object and "properties" not in schema and "additionalProperties" not in schema:
            found.append(where or "/")
        for k, v in schema.items():
            found += undocumented_objects(v, f"{where}/{k}")
    return found


class Conformance:
    """The closed document and the operations to look answers up in."""

    def __init__(self, document: dict[str, Any]) -> None:
        closed = close(document)
        self.components = closed["components"]
        ops = []
        for path, item in closed["paths"].items():
            pattern = re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(path)) + "$")
            literal = len([s for s in path.split("/") if s and not s.startswith("{")])
            for method in METHODS:
                if method in item:
                    ops.append((literal, pattern, method.upper(), item[method]))
        ops.sort(key=lambda o: -o[0])  # /v1/objects/confirm/batch before /v1/objects/{object_id}/…
        self.operations = [(pattern, method, op) for _literal, pattern, method, op in ops]

    def operation(self, method: str, path: str) -> dict[str, Any] | None:
        for pattern, m, op in self.operations:
            if m == method and pattern.match(path):
                return op
        return None

    def problems(self, method: str, path: str, status: int, content_type: str, body: Any) -> list[str]:
        """What is wrong with this answer by the document (empty: it conforms)."""
        op = self.operation(method, path)
        if op is None:
            return []
        response = op["responses"].get(str(status)) or op["responses"].get("default")
        if response is None:
            return [f"status {status} is not in the document for {method} {path}"]
        while "$ref" in response:
            response = self.components["responses"][response["$ref"].rsplit("/", 1)[1]]
        media = response.get("content", {})
        schema = media.get(content_type.split(";")[0].strip())
        if schema is None:
            return [f"{method} {path} {status}: content type {content_type} is not in the document ({', '.join(media)})"]
        root = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema["schema"]],
            "components": self.components,
        }
        validator = jsonschema.Draft202012Validator(root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        return [
            f"{method} {path} {status} at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(body)
        ]


@functools.cache
def _conformance(document_json: str) -> Conformance:
    return Conformance(json.loads(document_json))


def conformance_of(services: Services) -> Conformance:
    """The checker of the document of the app ``services`` serve (built as the engine
    builds it, without a request: the route tests' request counts stay theirs)."""
    return _conformance(json.dumps(build_document(create_app(services)), sort_keys=True))


class NonConforming(AssertionError):
    pass


def conforming_client(base_url: str, checker: Conformance, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that fails the request whose JSON answer breaks the document."""

    async def check(response: httpx.Response) -> None:
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("application/json"):
            return
        request = response.request
        if checker.operation(request.method, request.url.path) is None:
            return
        await response.aread()
        found = checker.problems(request.method, request.url.path, response.status_code, content_type, response.json())
        if found:
            raise NonConforming(
                "the answer breaks /v1/openapi.json:\n  " + "\n  ".join(found[:20]) + f"\nbody: {response.text[:2000]}"
            )

    return httpx.AsyncClient(base_url=base_url, event_hooks={"response": [check]}, **kwargs)


@pytest.fixture(name="client")
async def conforming_client_fixture(service: ServiceHandle) -> AsyncIterator[httpx.AsyncClient]:
    """The ``client`` fixture of a test folder whose answers are checked (import it in its conftest)."""
    async with conforming_client(service.url, conformance_of(service.services), timeout=30) as client:
        yield client
