"""Every response finishes whatever the request body (issue 17, points 1 and 2).

A route that answers without reading the body (405 on a blob URL, a download with a body,
a JSON body over ``http.max_json_bytes``) must leave the connection either reusable (the
next request on it is answered) or closed (``Connection: close`` and the socket really
closed), and no descriptor (socket, blob file) may outlive its request. Raw sockets, so
framing and what shares a connection are the test's choice.
"""

from __future__ import annotations

import os

import pytest
import trio

from tests.conftest import create_dataset, make_config
from tests.http.raw_http import chunked, exchange_then_health, fds_settle, head, open_fds
from tests.http.uploads_helpers import upload

LIMIT = 4096


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **{"http.max_json_bytes": LIMIT})


def _host(service) -> str:
    return service.url.split("//", 1)[1]


BLOB_PATHS = ["/blobs/objects/blob_x", "/blobs/uploads/upl_x", "/blobs/imports/imp_x", "/blobs/elsewhere"]


@pytest.mark.local_blobs
@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_refused_blob_request_with_a_body_leaves_the_connection_answered_or_closed(service, method, framing):
    for path in BLOB_PATHS:
        if framing == "length":
            request = head(method, path, _host(service), {"Content-Length": "3"}) + b"abc"
        else:
            request = head(method, path, _host(service), {"Transfer-Encoding": "chunked"}) + chunked(b"abc")
        reply, after = await exchange_then_health(service.url, request)
        assert reply is not None and reply.status in (404, 405), (path, reply)
        assert after in ("answered", "closed")


@pytest.mark.local_blobs
async def test_a_refused_blob_request_with_a_large_body_is_answered_and_the_connection_ends(service):
    """A body far larger than anything worth draining: the answer still comes, and the
    connection is closed rather than read to its end."""
    body = os.urandom(8 * 1024 * 1024)
    request = head("POST", "/blobs/uploads/upl_x", _host(service), {"Content-Length": str(len(body))})
    reply, after = await exchange_then_health(service.url, request, rest=body)
    assert reply is not None and reply.status == 405
    assert after == "closed"


async def _download_url(client, alice) -> tuple[str, bytes]:
    dataset = await create_dataset(client, alice.headers, name="Downloads")
    data = b"the bytes of an invoice\n" * 100
    up = await upload(client, alice.headers, dataset["dataset_id"], data)
    r = await client.get(f"/v1/objects/{up['object_id']}/download-url", headers=alice.headers)
    assert r.status_code == 200, r.text
    return r.json()["data"]["download_url"], data


def _blob_files_open(cfg) -> list[str]:
    blobs = str(cfg.data_dir / "blobs")
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(blobs):
            out.append(target)
    return out


@pytest.mark.local_blobs
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_download_sent_with_a_body_is_served_and_closes_its_file(service, client, alice, cfg, method, framing):
    url, data = await _download_url(client, alice)
    target = url.split(_host(service), 1)[1]
    if framing == "length":
        request = head(method, target, _host(service), {"Content-Length": "3"}) + b"abc"
    else:
        request = head(method, target, _host(service), {"Transfer-Encoding": "chunked"}) + chunked(b"abc")
    reply, after = await exchange_then_health(service.url, request, method=method)
    assert reply is not None and reply.status == 200, reply
    assert reply.body == (data if method == "GET" else b"")
    assert after in ("answered", "closed")
    with trio.move_on_after(10):
        while _blob_files_open(cfg):
            await trio.sleep(0.05)
    assert _blob_files_open(cfg) == []


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("size", [LIMIT + 1, 64 * 1024, 4 * 1024 * 1024])
async def test_a_json_body_over_the_limit_is_413_and_the_connection_answered_or_closed(service, alice, framing, size):
    body = b'{"name": "' + b"x" * size + b'"}'
    headers = {"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"}
    if framing == "length":
        request = head("POST", "/v1/datasets", _host(service), {**headers, "Content-Length": str(len(body))})
        rest = body
    else:
        request = head("POST", "/v1/datasets", _host(service), {**headers, "Transfer-Encoding": "chunked"})
        rest = chunked(body, 16 * 1024)
    for _ in range(3):
        reply, after = await exchange_then_health(service.url, request, rest=rest)
        assert reply is not None and reply.status == 413, reply
        assert b"payload_too_large" in reply.body
        assert after in ("answered", "closed")


async def test_a_json_body_just_over_the_limit_is_drained_and_the_connection_kept(service, alice):
    """A small overshoot is read to its end (bounded), so the connection stays usable."""
    body = b'{"name": "' + b"x" * LIMIT + b'"}'
    request = head("POST", "/v1/datasets", _host(service), {
        "Authorization": f"Bearer {alice.token}", "Content-Type": "application/json", "Content-Length": str(len(body))})
    reply, after = await exchange_then_health(service.url, request, rest=body)
    assert reply is not None and reply.status == 413
    assert after == "answered"


@pytest.mark.local_blobs
async def test_descriptors_come_back_after_500_requests_with_unread_bodies(service, client, alice):
    url, _ = await _download_url(client, alice)
    target = url.split(_host(service), 1)[1]
    host = _host(service)
    auth = {"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"}
    big = b'{"name": "' + b"x" * (2 * LIMIT) + b'"}'
    kinds = [
        (head("POST", "/blobs/objects/blob_x", host, {"Content-Length": "3"}) + b"abc", "POST", b""),
        (head("DELETE", "/blobs/uploads/upl_x", host, {"Transfer-Encoding": "chunked"}) + chunked(b"abc"), "DELETE", b""),
        (head("GET", target, host, {"Content-Length": "3"}) + b"abc", "GET", b""),
        (head("HEAD", target, host, {"Content-Length": "3"}) + b"abc", "HEAD", b""),
        (head("POST", "/v1/datasets", host, {**auth, "Content-Length": str(len(big))}), "POST", big),
        (head("POST", "/v1/datasets", host, {**auth, "Transfer-Encoding": "chunked"}), "POST", chunked(big)),
    ]
    for request, method, rest in kinds:  # warm up whatever the server opens once
        await exchange_then_health(service.url, request, method, rest)
    baseline = await fds_settle(open_fds())
    limiter = trio.CapacityLimiter(20)
    outcomes: list[str] = []

    async def one(i: int) -> None:
        async with limiter:
            request, method, rest = kinds[i % len(kinds)]
            reply, after = await exchange_then_health(service.url, request, method, rest)
            assert reply is not None and reply.status in (200, 405, 413), reply
            outcomes.append(after)

    async with trio.open_nursery() as nursery:
        for i in range(500):
            nursery.start_soon(one, i)
    assert len(outcomes) == 500
    assert await fds_settle(baseline) <= baseline
    assert (await client.get("/v1/health")).status_code == 200
