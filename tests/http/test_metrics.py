"""``GET /metrics``: Prometheus text that moves with what the engine does, served only
where it should be (loopback API listener, or a listener of its own)."""

from __future__ import annotations

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from engine.config import load_config
from engine.service import run_service
from tests.conftest import S3, create_dataset, make_config
from tests.http.test_imports import SCHEMA, jsonl, run_import
from tests.http.uploads_helpers import upload

ADMIN = {"admin.bootstrap_email": "root@example.com", "admin.bootstrap_password": "admin password"}


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN, **{"webhooks.allow_private_targets": True})


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(client) -> dict:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return samples(r.text)


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_requests_are_counted_by_route_template_and_status(client, alice):
    before = await scrape(client)
    ds = await create_dataset(client, alice.headers)
    for _ in range(3):
        assert (await client.get(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers)).status_code == 200
    assert (await client.get("/v1/datasets/dset_nosuchthing", headers=alice.headers)).status_code == 404
    assert (await client.get("/v1/nowhere")).status_code == 404
    after = await scrape(client)
    route = "/v1/datasets/{dataset_id}"
    assert value(after, "ipto_http_requests_total", method="GET", route=route, status="200") - \
        value(before, "ipto_http_requests_total", method="GET", route=route, status="200") == 3
    assert value(after, "ipto_http_requests_total", method="GET", route=route, status="404") == 1
    assert value(after, "ipto_http_requests_total", method="POST", route="/v1/datasets", status="201") == 1
    assert value(after, "ipto_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(after, "ipto_http_request_duration_seconds_count", method="GET", route=route) == 4
    # ids never become label values
    assert not any(ds["dataset_id"] in str(labels) for _, labels in after)


async def test_uploads_pipeline_and_review_queue_move(client, service, alice):
    admin = {"Authorization": "Bearer " + (await client.post(
        "/v1/auth/login", json={"email": "root@example.com", "password": "admin password"})).json()["data"]["token"]}
    ds = await create_dataset(client, alice.headers)
    before = await scrape(client)
    data = b"Invoice 0425 from Globex Corporation. Total due 1,234.00 EUR.\n"
    up = await upload(client, alice.headers, ds["dataset_id"], data, filename="a.txt", content_type="text/plain")
    staged = await scrape(client)
    assert value(staged, "ipto_uploads_confirmed_total") - value(before, "ipto_uploads_confirmed_total") == 1
    assert value(staged, "ipto_upload_bytes_total") - value(before, "ipto_upload_bytes_total") == len(data)
    assert value(staged, "ipto_review_queue", review_state="staged") == 1
    assert value(staged, "ipto_http_requests_total", method="PUT", route="/blobs/uploads/{key}", status="200") == (0 if S3 else 1)
    r = await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)
    assert r.status_code == 200, r.text
    await service.services.pipeline.wait_idle()
    done = await scrape(client)
    assert value(done, "ipto_review_queue", review_state="staged") == 0
    for stage in ("normalizing", "extracting", "enriching", "indexing"):
        assert value(done, "ipto_pipeline_stage_seconds_count", stage=stage, outcome="succeeded") == 1, stage
    assert value(done, "ipto_jobs", status="queued") == 0 and value(done, "ipto_jobs", status="running") == 0
    assert value(done, "ipto_actors_live") >= 1  # the dataset's actor is alive (idle timeout 300 s)
    assert ("ipto_actor_inbox_depth", ()) in done and ("ipto_leases_held", (("kind", "dataset"),)) in done


async def test_import_records_are_counted(client, service, alice):
    ds = await create_dataset(client, alice.headers, schema=SCHEMA)
    before = await scrape(client)
    imp = await run_import(client, service, alice.headers, ds["dataset_id"],
                           jsonl({"name": "a", "age": 1}, {"name": "b", "age": -1}, {"name": "c", "age": 3}))
    assert imp["status"] == "partial"
    after = await scrape(client)
    assert value(after, "ipto_import_records_total", outcome="accepted") - value(before, "ipto_import_records_total", outcome="accepted") == 2
    assert value(after, "ipto_import_records_total", outcome="rejected") - value(before, "ipto_import_records_total", outcome="rejected") == 1
    assert value(after, "ipto_imports", status="queued") == 0


async def test_webhook_delivery_attempts_are_counted_by_outcome(client, alice):
    """An endpoint where nothing listens: the attempt fails and is retried later."""
    r = await client.post("/v1/webhooks", headers=alice.headers, json={"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    assert r.status_code == 201, r.text
    ds = await create_dataset(client, alice.headers)
    r = await client.patch(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers, json={"description": "x"})
    assert r.status_code == 200  # dataset.updated: a delivery to the endpoint
    with trio.fail_after(30):
        while value(await scrape(client), "ipto_webhook_deliveries_total", outcome="retrying") < 1:
            await trio.sleep(0.1)
    assert value(await scrape(client), "ipto_webhook_deliveries_total", outcome="succeeded") == 0


async def test_metrics_disabled_is_a_404(nursery, tmp_path):
    cfg = make_config(tmp_path / "data", **{"metrics.enabled": False})
    handle = await nursery.start(run_service, cfg)
    async with httpx.AsyncClient(base_url=handle.url) as client:
        assert (await client.get("/metrics")).status_code == 404
        assert handle.services.metrics is None
    handle.stop()


async def test_public_bind_without_metrics_bind_serves_no_metrics(tmp_path):
    cfg = load_config(env={}, overrides={"data_dir": tmp_path, "http.host": "0.0.0.0"})
    assert cfg.metrics_where == "off"
    assert load_config(env={}, overrides={"data_dir": tmp_path, "http.host": "::1"}).metrics_where == "main"
    assert load_config(env={}, overrides={"data_dir": tmp_path, "http.host": "0.0.0.0",
                                          "metrics.bind": "127.0.0.1:9100"}).metrics_where == "separate"


async def test_metrics_bind_is_a_listener_of_its_own(nursery, tmp_path):
    port = _free_port()
    cfg = make_config(tmp_path / "data", **{"metrics.bind": f"127.0.0.1:{port}"})
    handle = await nursery.start(run_service, cfg)
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{handle.url}/metrics")).status_code == 404  # not on the API's listener
        await client.get(f"{handle.url}/v1/health")
        r = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200
        assert value(samples(r.text), "ipto_http_requests_total", method="GET", route="/v1/health", status="200") == 1
        assert (await client.get(f"http://127.0.0.1:{port}/v1/health")).status_code == 404  # only /metrics there
    handle.stop()
    await trio.sleep(0)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_bad_metrics_bind_names_the_key(tmp_path):
    from engine.config import ConfigError

    with pytest.raises(ConfigError, match="metrics.bind"):
        load_config(env={}, overrides={"data_dir": tmp_path, "metrics.bind": "nine-thousand"})
