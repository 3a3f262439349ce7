"""Cursors are user input (issue 17, point 3): whatever a client puts in one, every list
answers 400 ``invalid_request`` naming ``cursor``, never a 500. And they are opaque (point
7): sealed, so they show no row position, and bound to their list, its filters and the
caller's tenant, so an altered or carried-over cursor is a 400 too."""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import create_dataset, error_of, make_config
from tests.http.review_helpers import ADMIN, QUEUE, admin_login


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN)


def _plain(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


HOSTILE = [
    _plain({"v": 1, "s": 2**63}),
    _plain({"v": 1, "s": 2**64 + 5}),
    _plain({"v": 1, "s": 10**40}),
    _plain({"v": 1, "s": -1}),
    _plain({"v": 1, "s": 1.5}),
    _plain({"v": 1, "s": "7"}),
    _plain([1, 2]),
    "garbage!",
    "%00",
    "A" * 5000,
]


async def _lists(client, alice) -> list[str]:
    ds = (await create_dataset(client, alice.headers, name="Listed"))["dataset_id"]
    return [
        "/v1/datasets", "/v1/catalog/datasets", "/v1/api-keys", f"/v1/datasets/{ds}/objects",
        f"/v1/datasets/{ds}/imports", f"/v1/datasets/{ds}/datapoints", f"/v1/datasets/{ds}/grants",
    ]


async def test_a_hostile_cursor_is_a_400_on_every_list(client, alice):
    for path in await _lists(client, alice):
        for cursor in HOSTILE:
            r = await client.get(path, headers=alice.headers, params={"cursor": cursor})
            assert r.status_code == 400, (path, cursor, r.text)
            error = error_of(r)
            assert error["code"] == "invalid_request" and "cursor" in error["details"]["fields"], (path, error)


async def test_a_hostile_cursor_is_a_400_on_the_review_queue(client):
    admin = await admin_login(client)
    for order in ("newest", "oldest"):
        for cursor in HOSTILE:
            r = await client.get(QUEUE, headers=admin, params={"cursor": cursor, "order": order})
            assert r.status_code == 400, (order, cursor, r.text)
            assert "cursor" in error_of(r)["details"]["fields"]


async def test_a_hostile_cursor_is_a_400_in_search(client, alice):
    for cursor in [*HOSTILE, _plain({"v": 1, "s": "srch_x", "r": 2**70, "k": [1.0, 2**70], "f": "x"})]:
        r = await client.post("/v1/search", headers=alice.headers, json={"query": "invoice", "cursor": cursor})
        assert r.status_code == 400, (cursor, r.text)


def _flip(cursor: str, at: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return cursor[:at] + alphabet[(alphabet.index(cursor[at]) + 32) % 64]  # the high bit: never a padding bit + cursor[at + 1:]


async def _first_page(client, headers, path, **params):
    r = await client.get(path, headers=headers, params={"limit": 1, **params})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["has_more"] and data["next_cursor"]
    return data


async def test_a_cursor_shows_no_position(client, alice):
    for i in range(3):
        await create_dataset(client, alice.headers, name=f"d{i}")
    cursor = (await _first_page(client, alice.headers, "/v1/datasets"))["next_cursor"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    with pytest.raises(ValueError):
        json.loads(raw)
    assert b'"s"' not in raw
    # Sealed with a fresh nonce: the same position never gives the same cursor twice.
    again = (await _first_page(client, alice.headers, "/v1/datasets"))["next_cursor"]
    assert again != cursor


async def test_a_tampered_cursor_is_a_400(client, alice):
    for i in range(3):
        await create_dataset(client, alice.headers, name=f"d{i}")
    cursor = (await _first_page(client, alice.headers, "/v1/datasets"))["next_cursor"]
    assert (await client.get("/v1/datasets", headers=alice.headers, params={"cursor": cursor})).status_code == 200
    for at in (0, len(cursor) // 2, len(cursor) - 1):
        r = await client.get("/v1/datasets", headers=alice.headers, params={"cursor": _flip(cursor, at)})
        assert r.status_code == 400, r.text
        assert error_of(r)["details"]["fields"]["cursor"]
    for cut in (cursor[:-1], cursor[:10], cursor + "AA"):
        assert (await client.get("/v1/datasets", headers=alice.headers, params={"cursor": cut})).status_code == 400


async def test_a_cursor_is_bound_to_its_list_its_filters_and_its_tenant(client, alice, bob):
    for i in range(3):
        await create_dataset(client, alice.headers, name=f"d{i}", visibility="listed")
    cursor = (await _first_page(client, alice.headers, "/v1/datasets", status="draft"))["next_cursor"]
    ok = await client.get("/v1/datasets", headers=alice.headers, params={"status": "draft", "cursor": cursor, "limit": 5})
    assert ok.status_code == 200, ok.text  # the same list and filters, another page size
    refused = [
        ("/v1/datasets", alice.headers, {}),                                  # without the filter
        ("/v1/datasets", alice.headers, {"status": "active"}),                # another filter value
        ("/v1/datasets", alice.headers, {"status": "draft", "visibility": "listed"}),  # one more filter
        ("/v1/api-keys", alice.headers, {}),                                  # another list
        ("/v1/datasets", bob.headers, {"status": "draft"}),                   # another tenant
    ]
    for path, headers, params in refused:
        r = await client.get(path, headers=headers, params={**params, "cursor": cursor})
        assert r.status_code == 400, (path, params, r.text)
        assert "cursor" in error_of(r)["details"]["fields"]


async def test_the_review_queue_poll_cursor_still_polls(client, alice):
    admin = await admin_login(client)
    ds = await create_dataset(client, alice.headers, name="Polled")
    from tests.http.uploads_helpers import upload

    await upload(client, alice.headers, ds["dataset_id"], b"first\n", filename="a.txt")
    page = (await client.get(QUEUE, headers=admin, params={"order": "oldest"})).json()["data"]
    poll = page["poll_cursor"]
    await upload(client, alice.headers, ds["dataset_id"], b"second\n", filename="b.txt")
    r = await client.get(QUEUE, headers=admin, params={"order": "oldest", "cursor": poll})
    assert r.status_code == 200, r.text
    assert [o["original_filename"] for o in r.json()["data"]["objects"]] == ["b.txt"]
    assert (await client.get(QUEUE, headers=admin, params={"order": "newest", "cursor": poll})).status_code == 400
