"""Cursor pagination: limits, opaque cursors, stability under concurrent inserts."""

from __future__ import annotations

from engine.pagination import decode_cursor, encode_cursor
from tests.conftest import create_dataset, create_key


async def _walk(client, headers, path, key, limit):
    seen, cursor = [], None
    while True:
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        data = (await client.get(path, headers=headers, params=params)).json()["data"]
        seen.extend(item[key] for item in data[path.rsplit("/", 1)[-1].replace("-", "_")])
        assert len(data[path.rsplit("/", 1)[-1].replace("-", "_")]) <= limit
        if not data["has_more"]:
            assert data["next_cursor"] is None
            return seen
        cursor = data["next_cursor"]


async def test_pages_cover_everything_once(client, alice):
    ids = [(await create_dataset(client, alice.headers, name=f"d{i}"))["dataset_id"] for i in range(7)]
    seen = await _walk(client, alice.headers, "/v1/datasets", "dataset_id", 3)
    assert seen == list(reversed(ids))


async def test_default_limit_is_20(client, alice):
    for i in range(21):
        await create_dataset(client, alice.headers, name=f"d{i}")
    data = (await client.get("/v1/datasets", headers=alice.headers)).json()["data"]
    assert len(data["datasets"]) == 20 and data["has_more"] and data["total"] == 21


async def test_inserts_while_paging_neither_repeat_nor_skip(client, alice):
    ids = [(await create_dataset(client, alice.headers, name=f"d{i}"))["dataset_id"] for i in range(6)]
    first = (await client.get("/v1/datasets", headers=alice.headers, params={"limit": 2})).json()["data"]
    for i in range(3):
        await create_dataset(client, alice.headers, name=f"late{i}")
    rest, cursor = [], first["next_cursor"]
    while cursor:
        page = (await client.get("/v1/datasets", headers=alice.headers, params={"limit": 2, "cursor": cursor})).json()["data"]
        rest.extend(d["dataset_id"] for d in page["datasets"])
        cursor = page["next_cursor"]
    assert [d["dataset_id"] for d in first["datasets"]] + rest == list(reversed(ids))


async def test_api_keys_and_catalog_paginate(client, alice, service):
    from tests.http.test_imports import SCHEMA, jsonl, run_import

    keys = [(await create_key(client, alice.headers, ["datasets:read"]))["api_key_id"] for _ in range(5)]
    assert await _walk(client, alice.headers, "/v1/api-keys", "api_key_id", 2) == list(reversed(keys))
    listed = [(await create_dataset(client, alice.headers, visibility="listed", schema=SCHEMA))["dataset_id"] for _ in range(3)]
    for dataset_id in listed:  # the catalog shows what holds something to use
        await run_import(client, service, alice.headers, dataset_id, jsonl({"name": "Ann", "age": 31}))
    assert await _walk(client, alice.headers, "/v1/catalog/datasets", "dataset_id", 2) == list(reversed(listed))


def test_cursor_round_trip():
    assert decode_cursor(encode_cursor(42)) == 42
    assert decode_cursor(None) is None
