"""Depth and size of JSON bodies and record schemas are bounded before anything walks them
(issue 17, point 4): a schema 150 levels deep was a 500 (RecursionError in the
meta-schema check); now every body past 64 levels is 400 ``too_deep``, a schema past 32
levels too, and a schema over 128 KiB is 413 ``schema_too_large``."""

from __future__ import annotations

from typing import Any

from engine.jsonlimits import MAX_BODY_DEPTH, MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH
from tests.conftest import create_dataset, error_of


def nested_items(levels: int) -> dict[str, Any]:
    """A record schema whose array items nest ``levels`` times (``levels + 3`` JSON levels)."""
    inner: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        inner = {"type": "array", "items": inner}
    return {"type": "object", "properties": {"tags": inner}}


def nested_items_text(levels: int) -> str:
    """The same schema as JSON text (too deep for any encoder to write)."""
    return '{"type": "object", "properties": {"tags": ' + '{"type": "array", "items": ' * levels + '{"type": "string"}' + "}" * levels + "}}"


def nested_list(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


def _json_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_json_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_json_depth(v) for v in value), default=0)
    return 0


async def test_a_deeply_nested_schema_is_400_not_500(client, alice):
    ds = await create_dataset(client, alice.headers, name="Deep")
    headers = {**alice.headers, "Content-Type": "application/json"}
    for levels in (150, 400, 2000):
        schema = nested_items_text(levels)
        r = await client.put(f"/v1/datasets/{ds['dataset_id']}/schema", headers=headers, content=schema)
        assert r.status_code == 400, (levels, r.text[:300])
        assert error_of(r)["code"] == "too_deep"
        r = await client.post("/v1/datasets", headers=headers, content='{"name": "Deep", "schema": ' + schema + "}")
        assert r.status_code == 400, (levels, r.text[:300])
        assert error_of(r)["code"] == "too_deep"


async def test_schema_depth_limit_is_exact(client, alice):
    ds = await create_dataset(client, alice.headers, name="Deep")
    fits = nested_items(MAX_SCHEMA_DEPTH - 3)
    assert _json_depth(fits) == MAX_SCHEMA_DEPTH
    r = await client.put(f"/v1/datasets/{ds['dataset_id']}/schema", headers=alice.headers, json={"schema": fits})
    assert r.status_code == 200, r.text
    over = nested_items(MAX_SCHEMA_DEPTH - 2)
    r = await client.put(f"/v1/datasets/{ds['dataset_id']}/schema", headers=alice.headers, json={"schema": over})
    assert r.status_code == 400, r.text
    error = error_of(r)
    assert error["code"] == "too_deep" and "schema" in error["details"]["fields"]


async def test_a_schema_over_its_size_limit_is_413(client, alice):
    ds = await create_dataset(client, alice.headers, name="Wide")
    properties = {f"field_{i:05d}": {"type": "string", "description": "d" * 40} for i in range(MAX_SCHEMA_BYTES // 60)}
    schema = {"type": "object", "properties": properties}
    r = await client.put(f"/v1/datasets/{ds['dataset_id']}/schema", headers=alice.headers, json=schema)
    assert r.status_code == 413, r.text[:300]
    assert error_of(r)["code"] == "schema_too_large"
    half = {"type": "object", "properties": dict(list(properties.items())[: len(properties) // 3])}
    r = await client.put(f"/v1/datasets/{ds['dataset_id']}/schema", headers=alice.headers, json=half)
    assert r.status_code == 200, r.text[:300]


async def test_every_json_body_is_bounded_in_depth(client, alice):
    ds = await create_dataset(client, alice.headers, name="Bodies")
    deep = nested_list(MAX_BODY_DEPTH + 10)
    very_deep = "[" * 5000 + "]" * 5000  # past orjson's own limit
    routes = [
        ("POST", "/v1/auth/signup", {"email": "deep@example.com", "password": "a long passphrase", "name": deep}),
        ("POST", "/v1/datasets", {"name": "x", "description": deep}),
        ("PATCH", f"/v1/datasets/{ds['dataset_id']}", {"description": deep}),
        ("POST", "/v1/api-keys", {"name": "k", "scopes": deep}),
        ("POST", f"/v1/datasets/{ds['dataset_id']}/objects/upload", {"filename": deep}),
        ("POST", "/v1/search", {"query": "x", "dataset_ids": deep}),
        ("PUT", f"/v1/datasets/{ds['dataset_id']}/schema", {"schema": {"type": "object", "x": deep}}),
    ]
    for method, path, body in routes:
        r = await client.request(method, path, headers=alice.headers, json=body)
        assert r.status_code == 400, (path, r.text[:300])
        assert error_of(r)["code"] == "too_deep", path
        r = await client.request(method, path, headers={**alice.headers, "Content-Type": "application/json"}, content=very_deep)
        assert r.status_code == 400, (path, r.text[:300])
        assert error_of(r)["code"] == "too_deep", path
    # Right at the limit the body is read (and refused for what it says, not for its depth).
    r = await client.post("/v1/datasets", headers=alice.headers, json={"name": "x", "description": nested_list(MAX_BODY_DEPTH - 1)})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_request"
