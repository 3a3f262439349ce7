"""Request parsing: JSON bodies and query strings checked against small field specs.

Every problem in a body is collected before answering, so one 400 names all offending
fields: ``details = {"fields": {"visibility": "must be one of private, restricted, listed"}}``.
Unknown fields are refused too: a typo must not be silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from quart import current_app, request

from engine.errors import InvalidRequest, PayloadTooLarge
from engine.jsonlimits import MAX_BODY_DEPTH, check_depth, nul_paths, too_deep
from engine.pagination import DEFAULT_LIMIT, check_limit

# File names (an initiation's, a batch item's) are cleaned rather than refused: control
# characters, NUL included, are dropped (engine.objects.clean_filename; issue 17).
_CLEANED = re.compile(r"(?:files\.\d+\.)?filename")

_JSON_TYPES = {str: "string", int: "integer", bool: "boolean", list: "array", dict: "object"}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", list: "an array", dict: "an object"}


@dataclass(frozen=True)
class Field:
    """What one body field must be."""

    kind: type
    required: bool = False
    nullable: bool = False
    choices: tuple[str, ...] | None = None
    min_len: int | None = None
    max_len: int | None = None
    pattern: str | None = None
    items: type | None = None  # element type of a list
    item_choices: tuple[str, ...] | None = None
    max_items: int | None = None
    min_value: int | None = None
    max_value: int | None = None
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None
    schema: Mapping[str, Any] | None = None  # what ``check`` demands, in JSON Schema (the document)
    description: str = ""

    def json_schema(self) -> dict[str, Any]:
        """This field in JSON Schema (OpenAPI 3.1), derived from the checks :meth:`problem` runs."""
        out: dict[str, Any] = {"type": _JSON_TYPES[self.kind]}
        if self.choices is not None:
            out["enum"] = list(self.choices)
        if self.min_len is not None:
            out["minLength"] = self.min_len
            if self.min_len == 1:
                out["pattern"] = r"\S"  # not blank: the check strips before counting
        if self.max_len is not None:
            out["maxLength"] = self.max_len
        if self.pattern is not None:
            out["pattern"] = f"^(?:{self.pattern})$"
        if self.min_value is not None:
            out["minimum"] = self.min_value
        if self.max_value is not None:
            out["maximum"] = self.max_value
        if self.kind is list:
            items: dict[str, Any] = {"type": _JSON_TYPES[self.items]} if self.items is not None else {}
            if self.item_choices is not None:
                items["enum"] = list(self.item_choices)
            out["items"] = items
            if self.max_items is not None:
                out["maxItems"] = self.max_items
        if self.schema:
            out.update(self.schema)
        if self.nullable:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        if self.description:
            out["description"] = self.description
        return out

    def problem(self, value: Any) -> str | None:  # noqa: PLR0911, PLR0912 - one flat list of checks reads best
        if value is None:
            return None if self.nullable else "must not be null"
        if self.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            return "must be an integer"
        if self.kind is not int and (not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool))):
            return f"must be {_TYPE_NAMES.get(self.kind, self.kind.__name__)}"
        if isinstance(value, str):
            if self.choices is not None and value not in self.choices:
                return f"must be one of {', '.join(self.choices)}"
            if self.min_len is not None and len(value.strip()) < self.min_len:
                return "must not be empty" if self.min_len == 1 else f"must be at least {self.min_len} characters"
            if self.max_len is not None and len(value) > self.max_len:
                return f"must be at most {self.max_len} characters"
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                return "has an invalid format"
        if isinstance(value, int) and not isinstance(value, bool):
            if self.min_value is not None and value < self.min_value:
                return f"must be at least {self.min_value}"
            if self.max_value is not None and value > self.max_value:
                return f"must be at most {self.max_value}"
        if isinstance(value, list):
            if self.max_items is not None and len(value) > self.max_items:
                return f"must have at most {self.max_items} items"
            if self.items is not None and any(not isinstance(v, self.items) or isinstance(v, bool) for v in value):
                return f"items must be {_TYPE_NAMES.get(self.items, self.items.__name__)}"
            if self.item_choices is not None:
                bad = [v for v in value if v not in self.item_choices]
                if bad:
                    return f"unknown values {', '.join(map(str, bad))}; allowed: {', '.join(self.item_choices)}"
        if self.check is not None:
            return self.check(value)
        return None


def validate(spec: Mapping[str, Field], body: Any) -> dict[str, Any]:
    """Check ``body`` against ``spec``; return the fields present (PATCH-friendly)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", {"fields": {"body": "must be a JSON object"}})
    problems: dict[str, str] = {}
    for name in body:
        if name not in spec:
            problems[name] = "unknown field"
    for name, field in spec.items():
        if name not in body:
            if field.required:
                problems[name] = "is required"
            continue
        problem = field.problem(body[name])
        if problem:
            problems[name] = problem
    if problems:
        names = ", ".join(sorted(problems))
        raise InvalidRequest(f"invalid fields: {names}", {"fields": problems})
    return {name: body[name] for name in spec if name in body}


async def raw_body() -> bytes:
    """The request body, refused with 413 beyond ``http.max_json_bytes``."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    data = await request.get_data(cache=True, as_text=False)
    assert isinstance(data, bytes)
    return data


async def json_body_any() -> Any:
    """The JSON body of the current request, whatever its shape (checked by the caller)."""
    data = await raw_body()
    if not data.strip():
        raise InvalidRequest("a JSON body is required", {"fields": {"body": "is required"}})
    return _loads(data)


def _loads(data: bytes) -> Any:
    """Parse a JSON body, refusing one nested past MAX_BODY_DEPTH before anything walks it."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # orjson's own bound (1024), past ours
            raise too_deep("body", MAX_BODY_DEPTH) from None
        raise InvalidRequest(f"the body is not valid JSON: {exc}", {"fields": {"body": "malformed JSON"}}) from None
    check_depth(value, MAX_BODY_DEPTH, "body")
    if b"\\u0000" in data:  # JSON spells NUL only so
        where = next((path for path in nul_paths(value) if not _CLEANED.fullmatch(path)), None)
        if where is not None:
            raise InvalidRequest(f"{where} holds the NUL character (\\u0000), which no field may hold",
                                 {"fields": {where: "must not contain the NUL character"}})
    return value


async def json_body(spec: Mapping[str, Field], *, allow_empty: bool = False) -> dict[str, Any]:
    """Parse and validate the JSON body of the current request."""
    return parse_json_body(await raw_body(), request.mimetype, spec, allow_empty=allow_empty)


def parse_json_body(data: bytes, mimetype: str, spec: Mapping[str, Field], *, allow_empty: bool = False) -> dict[str, Any]:
    """Parse and validate a JSON body sent with ``mimetype`` (lower case, without parameters)."""
    if not data.strip():
        if allow_empty:
            return validate(spec, {})
        raise InvalidRequest("a JSON body is required", {"fields": {"body": "is required"}})
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise InvalidRequest(
            "the body must be sent as Content-Type: application/json", {"fields": {"content_type": f"got {mimetype}"}}
        )
    return validate(spec, _loads(data))


def query_choice(name: str, choices: tuple[str, ...]) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if value not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)}", {"fields": {name: f"must be one of {', '.join(choices)}"}})
    return value


def query_text(name: str, max_len: int = 64) -> str | None:
    """A short string parameter (an id); empty means absent."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_len:
        raise InvalidRequest(f"{name} is too long", {"fields": {name: f"must be at most {max_len} characters"}})
    return value


def query_instant(name: str) -> datetime | None:
    """An ISO 8601 instant with its offset (``2026-11-02T08:00:00Z``); a bad one is a 400."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidRequest(
            f"{name} must be an ISO 8601 instant with a time zone", {"fields": {name: "expected e.g. 2026-11-02T08:00:00Z"}}
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # a valid local time that UTC puts outside years 1-9999 (0001-01-01T00:00:00+05:00)
        raise InvalidRequest(f"{name} is out of range", {"fields": {
            name: "must fall between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"}}) from None


def query_int(name: str, default: int) -> int:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer", {"fields": {name: "must be an integer"}}) from None


def page_args() -> tuple[str | None, int]:
    """``(cursor, limit)`` from the query string (limit checked by the pagination helper)."""
    return request.args.get("cursor") or None, check_limit(query_int("limit", DEFAULT_LIMIT))
