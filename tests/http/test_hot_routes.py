"""Initiate and confirm answer the same on the plain-ASGI path (engine/http/hot.py) as through Quart.

A plain request (credentials in a header, a Content-Length, no Idempotency-Key) takes the
hot path; the same request with a chunked body goes through Quart, where the routes are
declared. Every answer — success and each kind of refusal — must be the same either way:
status, error code, message and details, the envelope, ``X-Request-Id``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import create_dataset, create_key, error_of
from tests.http.uploads_helpers import sha

DATA = b"hello, invoice\n"


async def chunked_body(body: bytes) -> AsyncIterator[bytes]:
    """``body`` as a request body of unknown length: sent chunked, so Quart answers it."""
    yield body


async def both(client, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[Any, Any]:
    """The same request plain (hot path) and chunked (Quart)."""
    plain = await client.request(method, url, headers=headers, content=body)
    chunked = await client.request(method, url, headers=headers, content=chunked_body(body))
    assert "content-length" in plain.request.headers
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    return plain, chunked


def same_error(plain, chunked, status: int, code: str) -> dict[str, Any]:
    """Both refused alike; the error."""
    assert plain.status_code == chunked.status_code == status, (plain.text, chunked.text)
    a, b = error_of(plain), error_of(chunked)
    assert a == b
    assert a["code"] == code
    return a


def envelope_data(r) -> Any:
    """The ``data`` of a success envelope, checked: its keys, its request id, its type."""
    body = r.json()
    assert set(body) == {"data", "request_id", "timestamp"}
    assert body["request_id"] == r.headers["X-Request-Id"]
    assert r.headers["content-type"] == "application/json"
    return body["data"]


def initiate_body(**fields: Any) -> bytes:
    return orjson.dumps({"filename": "invoice.txt", "content_type": "text/plain", "size_bytes": len(DATA), **fields})


JSON = {"Content-Type": "application/json"}


async def post_counts(client) -> dict[tuple[str, str], float]:
    """POST requests counted by ``/metrics``, by (route template, status)."""
    r = await client.get("/metrics")
    return {
        (s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
        if s.name == "ipto_http_requests_total" and s.labels.get("method") == "POST"
    }


async def test_initiate_refusals_are_the_same_on_both_paths(client, alice):
    ds = await create_dataset(client, alice.headers)
    url = f"/v1/datasets/{ds['dataset_id']}/objects/upload"
    h = {**alice.headers, **JSON}
    cases = [
        (h, b"{not json", 400, "invalid_request"),
        (h, b"", 400, "invalid_request"),
        (h, b"[1, 2]", 400, "invalid_request"),
        (h, initiate_body(size_bytes="ten", extra=1), 400, "invalid_request"),
        (h, orjson.dumps({"filename": "a.txt"}), 400, "invalid_request"),
        (h, initiate_body(checksum_sha256="abc"), 400, "invalid_request"),
        (h, initiate_body(content_type="video/mp4"), 400, "invalid_request"),
        ({**alice.headers, "Content-Type": "text/plain"}, initiate_body(), 400, "invalid_request"),
        ({"Authorization": "Bearer not-a-token", **JSON}, initiate_body(), 401, "unauthenticated"),
        ({"Authorization": "Basic abc", **JSON}, initiate_body(), 401, "unauthenticated"),
        ({"X-API-Key": "ipto_nosuchkey", **JSON}, initiate_body(), 401, "unauthenticated"),
    ]
    for headers, body, status, code in cases:
        plain, chunked = await both(client, "POST", url, headers, body)
        same_error(plain, chunked, status, code)
    plain, chunked = await both(client, "POST", "/v1/datasets/dset_nosuchthing/objects/upload", h, initiate_body())
    same_error(plain, chunked, 404, "not_found")
    reader = await create_key(client, alice.headers, ["datasets:read"])
    plain, chunked = await both(client, "POST", url, {"X-API-Key": reader["key"], **JSON}, initiate_body())
    same_error(plain, chunked, 403, "forbidden")


async def test_confirm_refusals_are_the_same_on_both_paths(client, alice, bob):
    ds = await create_dataset(client, alice.headers)
    up = (await client.post(f"/v1/datasets/{ds['dataset_id']}/objects/upload", headers=alice.headers,
                            json={"filename": "a.txt", "content_type": "text/plain", "size_bytes": len(DATA),
                                  "checksum_sha256": sha(DATA)})).json()["data"]
    url = f"/v1/objects/{up['object_id']}/confirm"
    h = {**alice.headers, **JSON}
    plain, chunked = await both(client, "POST", url, h, b"")
    same_error(plain, chunked, 422, "size_mismatch")  # no bytes yet
    plain, chunked = await both(client, "POST", url, h, orjson.dumps({"parts": [{"part_number": "1"}]}))
    same_error(plain, chunked, 400, "invalid_request")
    plain, chunked = await both(client, "POST", url, {**bob.headers, **JSON}, b"{}")
    same_error(plain, chunked, 404, "not_found")
    plain, chunked = await both(client, "POST", "/v1/objects/obj_nosuchthing/confirm", h, b"{}")
    same_error(plain, chunked, 404, "not_found")


async def test_a_whole_upload_answers_the_same_on_both_paths(client, alice):
    ds = await create_dataset(client, alice.headers)
    url = f"/v1/datasets/{ds['dataset_id']}/objects/upload"
    h = {**alice.headers, **JSON}
    plain, chunked = await both(client, "POST", url, h, initiate_body(checksum_sha256=sha(DATA)))
    assert plain.status_code == chunked.status_code == 201
    answers = []
    for r in (plain, chunked):
        up = envelope_data(r)
        assert (await client.put(up["upload_url"], content=DATA)).status_code == 200
        answers.append(up)
    assert set(answers[0]) == set(answers[1])
    first = await client.post(f"/v1/objects/{answers[0]['object_id']}/confirm", headers=h, content=b"{}")
    second = await client.post(f"/v1/objects/{answers[1]['object_id']}/confirm", headers=h, content=chunked_body(b"{}"))
    assert first.status_code == second.status_code == 200
    a, b = first.json()["data"], second.json()["data"]
    assert a.keys() == b.keys()
    assert (a["status"], a["review_state"], a["checksum_sha256"]) == (b["status"], b["review_state"], b["checksum_sha256"])
    assert a["checksum_sha256"] == sha(DATA)
    again = await client.post(f"/v1/objects/{answers[0]['object_id']}/confirm", headers=h, content=b"")
    assert again.status_code == 200 and again.json()["data"] == a  # confirming twice is harmless


async def test_hot_requests_are_counted_under_their_route(client, alice):
    ds = await create_dataset(client, alice.headers)
    h = {**alice.headers, **JSON}
    url = f"/v1/datasets/{ds['dataset_id']}/objects/upload"
    assert (await client.post(url, headers=h, content=initiate_body())).status_code == 201
    assert (await client.post(url, headers=h, content=b"{")).status_code == 400
    assert (await client.post("/v1/objects/obj_nosuchthing/confirm", headers=h, content=b"{}")).status_code == 404
    counted = await post_counts(client)
    assert counted[("/v1/datasets/{dataset_id}/objects/upload", "201")] == 1
    assert counted[("/v1/datasets/{dataset_id}/objects/upload", "400")] == 1
    assert counted[("/v1/objects/{object_id}/confirm", "404")] == 1
