"""A request whose body the engine never reads (a 413, a 405 with a body, a body sent to a
route that takes none) must not stall the keep-alive connection it came on.

Found by the fuzzing test (after such an answer the next request on the same connection
was never answered); fixed on main meanwhile by ``engine.http.body_guard`` (issue 17)."""

from __future__ import annotations

import httpx
import pytest
import trio


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/auth/login", b"x" * 2_000_000),        # 413 before the body is read
    ("GET", "/v1/auth/login", b'{"email": "a@b.c", "password": "x"}'),  # 405 with a body
    ("QUERY", "/v1/auth/signup", b'{"email": "a@b.c"}'),   # an unknown method with a body
    ("PUT", "/v1/health", b"{}" * 100_000),               # 405, a body of several messages
], ids=["413", "405-get-with-body", "unknown-method", "405-large-body"])
async def test_the_next_request_on_the_connection_is_answered(service, method, path, body):
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)  # one connection for both requests
    async with httpx.AsyncClient(base_url=service.url, limits=limits, timeout=10) as client:
        first = await client.request(method, path, content=body, headers={"Content-Type": "application/json"})
        assert 400 <= first.status_code < 500
        assert first.json()["error"]["code"]
        with trio.fail_after(10):
            second = await client.get("/v1/health")
        assert second.status_code == 200


async def test_a_body_read_whole_keeps_the_connection_open(client, alice):
    r = await client.post("/v1/datasets", headers=alice.headers, json={"name": "kept"})
    assert r.status_code == 201 and r.headers.get("connection") != "close"
