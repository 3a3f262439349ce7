"""Review queue and pipeline through the HTTP API, as a platform admin and a provider see them."""

from __future__ import annotations

import pytest

from tests.conftest import create_dataset, create_key, error_of, make_config, signup
from tests.http.uploads_helpers import upload

ADMIN = {"admin.bootstrap_email": "root@example.com", "admin.bootstrap_password": "admin password"}


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN, **{"pipeline.retry_backoff_seconds": 0.05})


@pytest.fixture(name="admin")
async def _admin(client):
    r = await client.post("/v1/auth/login", json={"email": "root@example.com", "password": "admin password"})
    return {"Authorization": f"Bearer {r.json()['data']['token']}"}


@pytest.fixture(name="dataset")
async def _dataset(client, alice):
    return await create_dataset(client, alice.headers, name="Invoices")


TEXT = b"Invoice 0425 from Globex Corporation.\n\nTotal due: 1,234.00 EUR by 30 April.\n"


async def _wait(service):
    await service.services.pipeline.wait_idle()


async def test_admin_endpoints_refuse_tenants(client, alice, dataset):
    up = await upload(client, alice.headers, dataset["dataset_id"], TEXT)
    oid = up["object_id"]
    key = (await create_key(client, alice.headers, ["datasets:read", "objects:write"]))["key"]
    for headers in (alice.headers, {"X-API-Key": key}):
        for method, path in [("GET", "/v1/admin/staged-objects"), ("GET", f"/v1/admin/staged-objects/{oid}"),
                             ("POST", f"/v1/admin/staged-objects/{oid}/approve"), ("POST", f"/v1/admin/staged-objects/{oid}/reject"),
                             ("POST", f"/v1/admin/staged-objects/{oid}/claim")]:
            r = await client.request(method, path, headers=headers)
            assert r.status_code == 403, (method, path)
            assert error_of(r)["details"]["required_scope"] == "admin:*"
    assert (await client.get("/v1/admin/staged-objects")).status_code == 401
    obj = (await client.get(f"/v1/objects/{oid}", headers=alice.headers)).json()["data"]
    assert obj["review_state"] == "staged"


async def test_queue_lists_staged_objects_of_every_tenant_with_filters(client, admin, alice, dataset):
    bob = await signup(client)
    theirs = await create_dataset(client, bob.headers)
    a = await upload(client, alice.headers, dataset["dataset_id"], TEXT)
    b = await upload(client, bob.headers, theirs["dataset_id"], TEXT)
    queue = (await client.get("/v1/admin/staged-objects", headers=admin)).json()["data"]
    assert [o["object_id"] for o in queue["objects"]] == [b["object_id"], a["object_id"]]
    only_bob = (await client.get("/v1/admin/staged-objects", headers=admin, params={"tenant_id": bob.tenant_id})).json()["data"]
    assert [o["object_id"] for o in only_bob["objects"]] == [b["object_id"]]
    opened = (await client.get(f"/v1/admin/staged-objects/{a['object_id']}", headers=admin)).json()["data"]
    assert opened["review_state"] == "under_review"
    staged = (await client.get("/v1/admin/staged-objects", headers=admin, params={"review_state": "staged"})).json()["data"]
    assert [o["object_id"] for o in staged["objects"]] == [b["object_id"]]
    assert (await client.get("/v1/admin/staged-objects", headers=admin, params={"review_state": "bogus"})).status_code == 400


async def test_approve_runs_the_pipeline_to_active(client, admin, alice, dataset, service):
    up = await upload(client, alice.headers, dataset["dataset_id"], TEXT)
    r = await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)
    assert r.status_code == 200
    body = r.json()["data"]
    assert body["object_id"] == up["object_id"] and body["review_state"] == "approved" and body["job_id"].startswith("job_")
    await _wait(service)
    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["status"] == "active" and obj["review_state"] == "approved"
    assert obj["latest_job_id"] == body["job_id"]
    assert obj["artifact_summary"]["plain_text"] is True and obj["artifact_summary"]["ocr_blocks"] is False
    job = (await client.get(f"/v1/jobs/{body['job_id']}", headers=alice.headers)).json()["data"]
    assert job["status"] == "succeeded" and job["type"] == "pipeline" and job["stage"] == "indexing"
    assert job["object_id"] == up["object_id"] and job["dataset_id"] == dataset["dataset_id"]
    assert job["started_at"] and job["finished_at"] and job["error"] is None
    assert job["attempts"] == 1  # tries of its (last) stage: one, it went through
    ds = (await client.get(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers)).json()["data"]
    assert ds["active_object_count"] == 1 and ds["status"] == "active" and ds["last_ingest_at"]
    hits = await service.services.store.search_chunks(alice.tenant_id, dataset["dataset_id"], "globex")
    assert hits and hits[0][0] == up["object_id"] and "Globex Corporation" in hits[0][2]
    again = await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)
    assert again.json()["data"]["job_id"] == body["job_id"]


async def test_declared_type_that_lies_fails_in_normalizing(client, admin, alice, dataset, service):
    up = await upload(client, alice.headers, dataset["dataset_id"], TEXT, content_type="application/pdf", filename="fake.pdf")
    job_id = (await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)).json()["data"]["job_id"]
    await _wait(service)
    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["status"] == "failed" and "normalizing" in obj["failure_reason"]
    job = (await client.get(f"/v1/jobs/{job_id}", headers=alice.headers)).json()["data"]
    assert job["status"] == "failed" and job["stage"] == "normalizing" and job["error"]
    assert await service.services.store.search_chunks(alice.tenant_id, dataset["dataset_id"], "globex") == []


async def test_reject_purges_and_illegal_moves_are_409(client, admin, alice, dataset, service):
    up = await upload(client, alice.headers, dataset["dataset_id"], TEXT)
    r = await client.post(f"/v1/admin/staged-objects/{up['object_id']}/reject", headers=admin, json={"reason": "spam"})
    assert r.status_code == 200 and r.json()["data"]["review_state"] == "rejected"
    r = await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)
    assert r.status_code == 409 and error_of(r)["details"]["review_state"] == "rejected"
    r = await client.get(f"/v1/objects/{up['object_id']}/download-url", headers=alice.headers)
    assert r.status_code == 409
    r = await client.post("/v1/admin/staged-objects/obj_nope/approve", headers=admin)
    assert r.status_code == 404
    r = await client.post(f"/v1/admin/staged-objects/{up['object_id']}/reject", headers=admin, json={"reason": 5})
    assert r.status_code == 400


async def test_deleting_an_active_object_removes_it_from_the_index(client, admin, alice, dataset, service):
    up = await upload(client, alice.headers, dataset["dataset_id"], TEXT)
    await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)
    await _wait(service)
    store = service.services.store
    assert await store.search_chunks(alice.tenant_id, dataset["dataset_id"], "globex")
    await client.delete(f"/v1/objects/{up['object_id']}", headers=alice.headers)
    assert await store.search_chunks(alice.tenant_id, dataset["dataset_id"], "globex") == []
    ds = (await client.get(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers)).json()["data"]
    assert ds["active_object_count"] == 0 and ds["object_count"] == 0


async def test_jobs_are_tenant_scoped(client, admin, alice, dataset, service):
    up = await upload(client, alice.headers, dataset["dataset_id"], TEXT)
    job_id = (await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)).json()["data"]["job_id"]
    bob = await signup(client)
    assert (await client.get(f"/v1/jobs/{job_id}", headers=bob.headers)).status_code == 404
    assert (await client.get("/v1/jobs/job_unknown", headers=alice.headers)).status_code == 404
    await _wait(service)


@pytest.mark.parametrize("failures", [1, 5])
async def test_stage_failures_retry_with_backoff_then_fail_the_job(client, admin, alice, dataset, service, monkeypatch, failures):
    """A transient failure is retried; one that persists past pipeline.max_attempts fails the job with its error."""
    import engine.pipeline.stages as stages

    real = stages.extract
    calls = 0

    def flaky(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls <= failures:
            raise RuntimeError(f"disk hiccup {calls}")
        return real(*args, **kwargs)

    monkeypatch.setattr(stages, "extract", flaky)
    up = await upload(client, alice.headers, dataset["dataset_id"], TEXT)
    job_id = (await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)).json()["data"]["job_id"]
    await _wait(service)
    job = (await client.get(f"/v1/jobs/{job_id}", headers=alice.headers)).json()["data"]
    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    max_attempts = service.services.cfg.pipeline.max_attempts
    if failures < max_attempts:
        assert job["status"] == "succeeded" and obj["status"] == "active" and calls == failures + 1
        assert job["attempts"] == 1  # the stages after the retried one went through at once
    else:
        assert calls == max_attempts
        assert job["status"] == "failed" and job["stage"] == "extracting" and job["attempts"] == max_attempts
        assert f"disk hiccup {max_attempts}" in job["error"]
        assert obj["status"] == "failed" and "disk hiccup" in obj["failure_reason"]
        assert await service.services.store.search_chunks(alice.tenant_id, dataset["dataset_id"], "globex") == []


async def test_a_stage_error_quoting_nul_fails_the_job_with_its_error(client, admin, alice, dataset, service, monkeypatch):
    """A parser's message may quote bytes of the file, NUL among them. PostgreSQL text (and
    jsonb, the status_changed event) cannot hold NUL: writing the error failed there, and
    the job was never failed. Now NUL becomes U+FFFD on PostgreSQL; SQLite keeps it."""
    import trio

    import engine.pipeline.stages as stages

    def broken(*args, **kwargs):
        raise ValueError("unexpected name /Ty\x00pe in the file")

    monkeypatch.setattr(stages, "extract", broken)
    up = await upload(client, alice.headers, dataset["dataset_id"], TEXT)
    job_id = (await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)).json()["data"]["job_id"]
    with trio.fail_after(30):
        await _wait(service)
    job = (await client.get(f"/v1/jobs/{job_id}", headers=alice.headers)).json()["data"]
    obj = (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]
    assert job["status"] == "failed" and obj["status"] == "failed"
    assert any(f"/Ty{c}pe" in job["error"] and f"/Ty{c}pe" in obj["failure_reason"] for c in ("\x00", "\ufffd"))


async def test_a_store_failure_under_a_pipeline_run_pauses_it_and_the_service_lives_on(client, admin, alice, dataset, service,
                                                                                      monkeypatch):
    """A store error in a background pipeline run (an outage, a value the store refuses)
    went up into the supervisor's nursery and stopped the whole service. Now the run is
    logged, paused and tried again; the job ends active once the store answers again."""
    import dataclasses

    import trio

    from engine.errors import StoreError

    store = service.services.store
    real = store.get_job_any
    failures = []

    async def failing(job_id):
        if len(failures) < 2:
            failures.append(job_id)
            raise StoreError("the store is away")
        return await real(job_id)

    monkeypatch.setattr(store, "get_job_any", failing)
    pipeline = service.services.pipeline
    monkeypatch.setattr(pipeline, "cfg", dataclasses.replace(pipeline.cfg, retry_backoff_seconds=0.01))
    up = await upload(client, alice.headers, dataset["dataset_id"], TEXT)
    job_id = (await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)).json()["data"]["job_id"]
    with trio.fail_after(30):
        await _wait(service)
    assert failures == [job_id, job_id]
    job = (await client.get(f"/v1/jobs/{job_id}", headers=alice.headers)).json()["data"]
    assert job["status"] == "succeeded", job
    assert (await client.get(f"/v1/objects/{up['object_id']}", headers=alice.headers)).json()["data"]["status"] == "active"
    assert (await client.get("/v1/health")).status_code == 200


async def test_admin_can_follow_the_job_its_approval_started(client, admin, alice, dataset, service):
    up = await upload(client, alice.headers, dataset["dataset_id"], TEXT)
    job_id = (await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)).json()["data"]["job_id"]
    await _wait(service)
    r = await client.get(f"/v1/jobs/{job_id}", headers=admin)
    assert r.status_code == 200 and r.json()["data"]["status"] == "succeeded"
