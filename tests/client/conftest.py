"""Client tests run against a real service (6 MiB multipart threshold for upload tests)."""

from __future__ import annotations

import httpx
import pytest

from engine.client import AsyncClient, RetryPolicy
from tests.conftest import make_config
from tests.http.uploads_helpers import MULTIPART

FAST = RetryPolicy(attempts=4, backoff_seconds=0.01, max_backoff_seconds=0.05)


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **MULTIPART)


class Recorder(httpx.AsyncBaseTransport):
    """Forwards to a real transport and records (method, path, headers) of each request;
    ``faults`` are consumed one per matching request: "drop-after" forwards the request,
    then fails as if the connection broke before the answer arrived; "503" and "403"
    answer so without forwarding; "refuse" fails as if the connection could not be opened."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str, str, httpx.Headers]] = []
        self.faults: list[tuple[str, str]] = []  # (method, fault)
        self.answers: list[httpx.Response] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path, request.headers))
        fault = next((f for f in self.faults if f[0] == request.method), None)
        if fault is not None:
            self.faults.remove(fault)
            if fault[1] == "refuse":
                raise httpx.ConnectError("connection refused (test)", request=request)
            if fault[1] == "403":
                body = b'{"error": {"code": "forbidden", "message": "the URL has expired (test)", "details": null}, "request_id": "req_t", "timestamp": "x"}'
                return httpx.Response(403, content=body, headers={"Content-Type": "application/json"}, request=request)
            if fault[1] == "503":
                body = b'{"error": {"code": "unavailable", "message": "busy (test)", "details": null}, "request_id": "req_t", "timestamp": "x"}'
                return httpx.Response(503, content=body, headers={"Content-Type": "application/json"}, request=request)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if fault is not None and fault[1] == "drop-after":
            raise httpx.ReadError("connection reset by peer (test)", request=request)
        self.answers.append(response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(name="recorder")
def _recorder() -> Recorder:
    return Recorder()


@pytest.fixture(name="api")
async def _api(service, alice, recorder):
    async with AsyncClient(service.url, token=alice.token, retry=FAST, transport=recorder) as api:
        yield api
