"""HTTP conventions of API.md: envelopes, request ids, and 4xx (never 500) for bad input."""

from __future__ import annotations

import re

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from engine.service import run_service
from tests.conftest import error_of, make_config
from tests.http.review_helpers import ADMIN, ADMIN_EMAIL, ADMIN_PASSWORD

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_success_envelope_carries_request_id_and_timestamp(client):
    r = await client.get("/v1/health")
    body = r.json()
    assert set(body) == {"data", "request_id", "timestamp"}
    assert body["request_id"].startswith("req_")
    assert body["request_id"] == r.headers["X-Request-Id"]
    assert ISO_Z.match(body["timestamp"])
    assert r.headers["content-type"] == "application/json"


async def test_health_reports_dependencies_and_version(client):
    data = (await client.get("/v1/health")).json()["data"]
    assert data == {"status": "ok", "store": "ok", "blobs": "ok", "version": "0.1.0"}


async def test_unknown_route_is_a_404_envelope(client):
    r = await client.get("/v1/no-such-thing")
    assert r.status_code == 404
    assert error_of(r)["code"] == "not_found"


async def test_wrong_method_is_a_405_envelope(client):
    r = await client.put("/v1/health")
    assert r.status_code == 405
    assert error_of(r)["code"] == "method_not_allowed"
    assert "GET" in r.headers["Allow"]


async def test_malformed_json_is_invalid_request(client, alice):
    r = await client.post("/v1/datasets", headers={**alice.headers, "Content-Type": "application/json"}, content=b'{"name": ')
    assert r.status_code == 400
    err = error_of(r)
    assert err["code"] == "invalid_request"
    assert "body" in err["details"]["fields"]


async def test_body_that_is_not_an_object_is_invalid_request(client, alice):
    r = await client.post("/v1/datasets", headers=alice.headers, json=["name"])
    assert r.status_code == 400
    assert error_of(r)["details"]["fields"] == {"body": "must be a JSON object"}


async def test_every_offending_field_is_named(client, alice):
    r = await client.post(
        "/v1/datasets",
        headers=alice.headers,
        json={"name": 5, "visibility": "public", "monetization_mode": "cheap", "colour": "red"},
    )
    assert r.status_code == 400
    fields = error_of(r)["details"]["fields"]
    assert set(fields) == {"name", "visibility", "monetization_mode", "colour"}
    assert "private, restricted, listed" in fields["visibility"]
    assert fields["colour"] == "unknown field"


async def test_missing_body_and_wrong_content_type_are_invalid_request(client, alice):
    r = await client.post("/v1/datasets", headers=alice.headers)
    assert r.status_code == 400
    r = await client.post("/v1/datasets", headers=alice.headers, data={"name": "form"})
    assert r.status_code == 400
    assert "content_type" in error_of(r)["details"]["fields"]


async def test_oversized_json_body_is_413(client, alice):
    r = await client.post("/v1/datasets", headers=alice.headers, json={"name": "x", "description": "y" * 2_000_000})
    assert r.status_code == 413
    assert error_of(r)["code"] == "payload_too_large"


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "cursor=garbage!", "status=retired", "visibility=public"])
async def test_bad_query_parameters_are_invalid_request(client, alice, query):
    r = await client.get(f"/v1/datasets?{query}", headers=alice.headers)
    assert r.status_code == 400
    assert error_of(r)["code"] == "invalid_request"


async def test_an_instant_utc_puts_out_of_range_is_a_400_on_every_route_taking_one(nursery, tmp_path):
    """0001-01-01T00:00:00+05:00 is a valid ISO 8601 instant, but in UTC it falls before year 1
    (and 9999-12-31T23:59:59-05:00 after 9999): converting it raised OverflowError, a 500."""
    handle = await nursery.start(run_service, make_config(tmp_path / "data", **ADMIN))
    try:
        async with httpx.AsyncClient(base_url=handle.url, timeout=30) as client:
            r = await client.post("/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            headers = {"Authorization": f"Bearer {r.json()['data']['token']}"}
            checked = []
            for path, operations in (await client.get("/v1/openapi.json")).json()["paths"].items():
                for method, operation in operations.items():
                    for param in operation.get("parameters", []):
                        if param["in"] != "query" or param["schema"].get("format") != "date-time":
                            continue
                        for value in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
                            r = await client.request(method.upper(), path, headers=headers, params={param["name"]: value})
                            assert r.status_code == 400, (path, param["name"], value, r.text)
                            assert param["name"] in error_of(r)["details"]["fields"]
                        for value in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"):  # the very ends are fine
                            r = await client.request(method.upper(), path, headers=headers, params={param["name"]: value})
                            assert r.status_code == 200, (path, param["name"], value, r.text)
                        checked.append((path, param["name"]))
            assert len(checked) >= 10, checked  # activity (2 lists), spend, analytics, the review queue: from/to each
    finally:
        handle.stop()


async def test_access_log_line_and_request_id_bound_to_every_line(client, alice):
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        r = await client.post("/v1/datasets", headers=alice.headers, json={"name": "logged"})
    request_id = r.json()["request_id"]
    access = [entry for entry in logs if entry["event"] == "request"]
    assert len(access) == 1
    line = access[0]
    assert line["method"] == "POST" and line["path"] == "/v1/datasets" and line["status"] == 201
    assert line["duration_ms"] >= 0
    assert line["request_id"] == request_id
    created = [entry for entry in logs if entry["event"] == "dataset_created"]
    assert created and created[0]["request_id"] == request_id


async def test_unexpected_exception_is_a_500_envelope_without_internals(client, alice, service, monkeypatch):
    async def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(service.services.datasets, "create", boom)
    r = await client.post("/v1/datasets", headers=alice.headers, json={"name": "x"})
    assert r.status_code == 500
    err = error_of(r)
    assert err["code"] == "internal"
    assert "secret internal detail" not in r.text


async def test_a_store_error_is_a_500_without_the_drivers_text(client, alice, service, monkeypatch):
    """A StoreError carries the driver's complaint (PostgreSQL's, with the value it refused):
    it was the 500's message. The log keeps it; the client gets the request id."""
    from engine.errors import StoreError

    async def broken(*args, **kwargs):
        raise StoreError('postgresql error: CharacterNotInRepertoireError: invalid byte sequence for encoding "UTF8": 0x00')

    monkeypatch.setattr(service.services.datasets, "create", broken)
    r = await client.post("/v1/datasets", headers=alice.headers, json={"name": "x"})
    assert r.status_code == 500
    err = error_of(r)
    assert err["code"] == "internal" and err["details"] is None
    assert "postgresql" not in r.text and "CharacterNotInRepertoire" not in r.text
    assert r.json()["request_id"] in err["message"]


async def test_an_untranslated_unique_violation_is_a_409_without_the_drivers_text(client, alice, service, monkeypatch):
    from engine.errors import UniqueViolation

    async def clash(*args, **kwargs):
        raise UniqueViolation('duplicate key value violates unique constraint "datasets_tenant_name_key"')

    monkeypatch.setattr(service.services.datasets, "create", clash)
    r = await client.post("/v1/datasets", headers=alice.headers, json={"name": "x"})
    assert r.status_code == 409
    err = error_of(r)
    assert err["code"] == "conflict" and err["details"] is None
    assert "constraint" not in r.text and "duplicate key" not in r.text


async def test_health_is_503_when_the_store_is_down(client, service, monkeypatch):
    async def down():
        raise OSError("disk gone")

    monkeypatch.setattr(service.services.store, "ping", down)
    r = await client.get("/v1/health")
    assert r.status_code == 503
    assert r.json()["data"]["store"] == "down"
