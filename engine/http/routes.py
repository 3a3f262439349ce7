"""Route definitions: one declaration the server validates with and the document is built from.

Every API handler is declared with :func:`route`::

    @route(bp, "POST", "/v1/datasets", scope="datasets:write", body=CREATE, ok=(201, DATASET),
           summary="Create a dataset", errors=(409,))
    async def create_dataset(principal: Principal, body: dict[str, Any]) -> Response: ...

The declaration registers the URL rule, wraps the handler in :func:`engine.http.api.endpoint`
(authentication, scope, idempotency), validates the request *before* the handler runs —
the JSON body against its :class:`Body` (typed :class:`~engine.http.validate.Field` specs:
every problem collected into one 400) and each query parameter against its :class:`Query`
— and hands the handler ``body=`` and ``query=`` already checked. The same objects produce
the OpenAPI document (:mod:`engine.http.openapi`): request body schemas, query parameters,
the success response's schema, the error envelope for every error status, the auth
schemes and the scope. A rule in the app's URL map without a declaration is a rule the
document lacks, and ``tests/http/test_openapi.py`` fails on it.

Why :class:`Field` specs rather than msgspec Structs: the API's contract is that one 400
names *every* offending field (``details.fields``) with a readable sentence, and that
unknown fields are refused; msgspec stops at the first error and words it its own way, so
keeping the behaviour would have meant walking the Struct's fields with a validator of our
own anyway. The specs are frozen dataclasses; the schema of each is derived from it
(:meth:`Field.json_schema`), never written beside it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quart import Blueprint, Response, request

from engine.errors import InvalidRequest
from engine.http.api import endpoint
from engine.http.validate import Field, json_body, json_body_any, query_choice, query_instant, query_int, query_text
from engine.pagination import DEFAULT_LIMIT, MAX_LIMIT, check_limit

JSON = "application/json"
Schema = dict[str, Any]


@dataclass(frozen=True)
class Body:
    """A JSON request body: a named object of typed fields (``any_json``: any JSON value,
    checked by the domain, e.g. a record schema)."""

    name: str
    fields: Mapping[str, Field] = field(default_factory=dict)
    optional: bool = False  # an empty body is the same as {}
    any_json: bool = False
    description: str = ""

    async def read(self) -> Any:
        if self.any_json:
            return await json_body_any()
        return await json_body(self.fields, allow_empty=self.optional)

    def json_schema(self) -> Schema:
        if self.any_json:
            return {"description": self.description or "any JSON value"}
        schema: Schema = {
            "type": "object",
            "properties": {name: f.json_schema() for name, f in self.fields.items()},
            "additionalProperties": False,
        }
        required = [name for name, f in self.fields.items() if f.required]
        if required:
            schema["required"] = required
        if self.description:
            schema["description"] = self.description
        return schema


@dataclass(frozen=True)
class Query:
    """One query-string parameter: ``choice`` (one of ``choices``), ``text`` (a short id),
    ``instant`` (ISO 8601 with a time zone), ``limit`` and ``cursor`` (pagination),
    ``pattern`` (matching ``pattern``; ``lower`` folds it to lower case)."""

    name: str
    kind: str
    choices: tuple[str, ...] = ()
    max_len: int = 64
    pattern: str | None = None
    message: str = ""
    description: str = ""

    def read(self) -> Any:
        if self.kind == "choice":
            return query_choice(self.name, self.choices)
        if self.kind == "text":
            return query_text(self.name, self.max_len)
        if self.kind == "instant":
            return query_instant(self.name)
        if self.kind == "limit":
            return check_limit(query_int(self.name, DEFAULT_LIMIT))
        if self.kind == "cursor":
            return request.args.get(self.name) or None
        if self.kind == "pattern":
            value = request.args.get(self.name) or None
            if value is not None and (len(value) > self.max_len or not re.fullmatch(self.pattern or ".*", value)):
                raise InvalidRequest(f"{self.name} must be {self.message}", {"fields": {self.name: self.message}})
            return value
        raise AssertionError(self.kind)

    def json_schema(self) -> Schema:
        if self.kind == "choice":
            return {"type": "string", "enum": list(self.choices)}
        if self.kind == "instant":
            return {"type": "string", "format": "date-time"}
        if self.kind == "limit":
            return {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}
        if self.kind == "cursor":
            return {"type": "string"}
        if self.kind == "pattern":
            return {"type": "string", "pattern": f"^(?:{self.pattern})$", "maxLength": self.max_len}
        return {"type": "string", "maxLength": self.max_len}


WINDOW = (Query("from", "instant", description="inclusive"), Query("to", "instant", description="exclusive"))
PAGE = (Query("limit", "limit", description="page size, 1–100"),
        Query("cursor", "cursor", description="the next_cursor of the previous page (opaque)"))


@dataclass(frozen=True)
class RouteSpec:
    """What the document says about one route (read by :mod:`engine.http.openapi`)."""

    name: str
    method: str
    path: str
    summary: str
    scope: str | None
    public: bool
    body: Body | None
    query: tuple[Query, ...]
    ok_status: int
    ok_schema: Schema | None  # the ``data`` of the success envelope; None: not JSON
    ok_content_type: str | tuple[str, ...]  # several: the route answers any of these
    errors: tuple[int, ...]
    tag: str
    description: str = ""
    cookie: bool = False  # the console's session cookie is accepted too
    path_schemas: Mapping[str, Schema] = field(default_factory=dict)  # path parameters other than plain strings
    also_ok: Mapping[int, Schema] = field(default_factory=dict)  # other statuses answered with a data envelope


def route(
    bp: Blueprint,
    method: str,
    path: str,
    *,
    summary: str,
    scope: str | None = None,
    public: bool = False,
    body: Body | None = None,
    query: tuple[Query, ...] = (),
    ok: tuple[int, Schema | None] = (200, None),
    ok_content_type: str | tuple[str, ...] = JSON,
    errors: tuple[int, ...] = (),
    description: str = "",
    refresh: Callable[..., Awaitable[Response | None]] | None = None,
    changes_state: bool = False,
    wrap: bool = True,
    precheck: Callable[[], None] | None = None,
    path_schemas: Mapping[str, Schema] | None = None,
    also_ok: Mapping[int, Schema] | None = None,
) -> Callable[[Callable[..., Awaitable[Response]]], Callable[..., Awaitable[Response]]]:
    """Declare, register and wrap an API handler (see the module docstring).

    ``wrap=False`` registers a route that does its own authentication (the console's pages
    and sign-in, ``/docs``, ``/metrics``): it is declared and documented all the same.
    ``precheck`` runs before the body is read (the console's sign-in refuses cross-site
    requests before looking at what they carry). ``also_ok``: statuses besides ``ok``'s
    whose answer is a data envelope too, not an error (the health check's 503)."""

    def decorate(fn: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        spec = RouteSpec(
            name=fn.__name__, method=method, path=path, summary=summary, scope=scope, public=public or not wrap, body=body, query=query,
            ok_status=ok[0], ok_schema=ok[1], ok_content_type=ok_content_type, errors=errors, tag=bp.name,
            description=description or (fn.__doc__ or "").strip(), cookie=wrap and not public,
            path_schemas=dict(path_schemas or {}), also_ok=dict(also_ok or {}),
        )

        @functools.wraps(fn)
        async def checked(*args: Any, **kwargs: Any) -> Response:
            if precheck is not None:
                precheck()
            if query:
                kwargs["query"] = {q.name: q.read() for q in query}
            if body is not None:
                kwargs["body"] = await body.read()
            return await fn(*args, **kwargs)

        view = endpoint(scope, public=public, refresh=refresh, changes_state=changes_state)(checked) if wrap else checked
        view.api_spec = spec  # type: ignore[attr-defined]
        bp.add_url_rule(path, endpoint=fn.__name__, view_func=view, methods=[method])
        return view

    return decorate
