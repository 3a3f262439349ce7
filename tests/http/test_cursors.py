"""Cursors are user input (issue 17, point 3): whatever a client puts in one, every list
answers 400 ``invalid_request`` naming ``cursor``, never a 500."""

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
