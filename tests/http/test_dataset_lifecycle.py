"""The dataset lifecycle as seeds 002/003 give it: archived, admin suspension, deletion that
takes everything with it, and a catalog of what a buyer can use."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.datasets import STATUSES, TRANSITIONS
from tests.conftest import create_dataset, error_of, make_config
from tests.http.test_imports import SCHEMA, jsonl, run_import
from tests.http.test_review import ADMIN
from tests.http.uploads_helpers import initiate, upload

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN)


@pytest.fixture(name="admin")
async def _admin(client):
    r = await client.post("/v1/auth/login", json={"email": "root@example.com", "password": "admin password"})
    return {"Authorization": f"Bearer {r.json()['data']['token']}"}


async def _status(client, headers, dataset_id) -> str:
    return (await client.get(f"/v1/datasets/{dataset_id}", headers=headers)).json()["data"]["status"]


def test_readme_table_lists_every_transition_and_no_other():
    """The README's lifecycle table and TRANSITIONS say the same thing, move for move."""
    text = README.read_text()
    table = text[text.index("## Dataset lifecycle"):].split("\n\n")[2]
    listed: dict[tuple[str, str], set[str]] = {}
    for row in table.splitlines()[2:]:
        sources, targets, who, _ = (cell.strip() for cell in row.strip("|").split("|"))
        actor = {"system": "system", "owner": "owner", "platform admin": "admin"}[who]
        for src in sources.split(", "):
            for dst in targets.split(", "):
                listed.setdefault((src, dst), set()).add(actor)
    assert listed == {move: set(who) for move, who in TRANSITIONS.items()}
    assert {s for move in TRANSITIONS for s in move} == set(STATUSES)


async def test_archive_filter_refuse_content_and_resume(client, alice, bob):
    ds = await create_dataset(client, alice.headers, name="Old invoices", schema=SCHEMA)
    other = await create_dataset(client, alice.headers, name="Current")
    url = f"/v1/datasets/{ds['dataset_id']}"
    r = await client.patch(url, headers=alice.headers, json={"status": "archived"})
    assert r.status_code == 200 and r.json()["data"]["status"] == "archived"

    listed = (await client.get("/v1/datasets?status=archived", headers=alice.headers)).json()["data"]
    assert [d["dataset_id"] for d in listed["datasets"]] == [ds["dataset_id"]] and listed["total"] == 1
    assert (await client.get("/v1/datasets?status=draft", headers=alice.headers)).json()["data"]["datasets"][0]["dataset_id"] == other["dataset_id"]
    assert (await client.get("/v1/datasets?status=archived", headers=bob.headers)).json()["data"]["total"] == 0

    r = await initiate(client, alice.headers, ds["dataset_id"], b"late invoice")
    assert r.status_code == 409 and error_of(r)["details"] == {"current_status": "archived"}
    assert "does not accept uploads" in error_of(r)["message"]
    r = await client.get(f"{url}/upload-url/late.jsonl", headers=alice.headers)
    assert r.status_code == 409 and "does not accept imports" in error_of(r)["message"]
    assert (await client.patch(url, headers=alice.headers, json={"status": "paused"})).status_code == 409  # unarchive first
    r = await client.patch(url, headers=alice.headers, json={"name": "Old invoices (2019)"})  # metadata stays editable
    assert r.status_code == 200 and r.json()["data"]["status"] == "archived"

    r = await client.patch(url, headers=alice.headers, json={"status": "active"})
    assert r.status_code == 200 and r.json()["data"]["status"] == "draft"  # nothing in it yet
    assert (await initiate(client, alice.headers, ds["dataset_id"], b"late invoice")).status_code == 201


async def test_a_paused_dataset_can_be_archived_and_an_archived_one_deleted(client, alice):
    ds = await create_dataset(client, alice.headers)
    url = f"/v1/datasets/{ds['dataset_id']}"
    await client.patch(url, headers=alice.headers, json={"status": "paused"})
    assert (await client.patch(url, headers=alice.headers, json={"status": "archived"})).json()["data"]["status"] == "archived"
    assert (await client.delete(url, headers=alice.headers)).status_code == 200
    assert (await client.get(url, headers=alice.headers)).status_code == 404


async def test_admin_suspends_and_unsuspends_a_tenants_dataset(client, alice, admin, service):
    ds = await create_dataset(client, alice.headers, schema=SCHEMA)
    await run_import(client, service, alice.headers, ds["dataset_id"], jsonl({"name": "Ann", "age": 31}))
    url, admin_url = f"/v1/datasets/{ds['dataset_id']}", f"/v1/admin/datasets/{ds['dataset_id']}"
    assert await _status(client, alice.headers, ds["dataset_id"]) == "active"

    r = await client.post(f"{admin_url}/suspend", headers=admin)
    assert r.status_code == 200 and r.json()["data"]["status"] == "suspended"
    assert r.json()["data"]["tenant_id"] == alice.tenant_id
    assert (await client.post(f"{admin_url}/suspend", headers=admin)).json()["data"]["status"] == "suspended"  # no change

    for body in ({"status": "active"}, {"name": "renamed"}, {"visibility": "listed"}):
        r = await client.patch(url, headers=alice.headers, json=body)
        assert r.status_code == 409 and error_of(r)["details"] == {"current_status": "suspended"}, body
    assert (await initiate(client, alice.headers, ds["dataset_id"], b"more")).status_code == 409
    assert (await client.get(f"{url}/upload-url/more.jsonl", headers=alice.headers)).status_code == 409
    assert (await client.get(url, headers=alice.headers)).status_code == 200  # still readable by its owner

    r = await client.post(f"{admin_url}/unsuspend", headers=admin)
    assert r.status_code == 200 and r.json()["data"]["status"] == "active"  # it holds a record: active again
    r = await client.post(f"{admin_url}/unsuspend", headers=admin)
    assert r.status_code == 409 and error_of(r)["details"] == {"current_status": "active"}


async def test_suspension_is_for_platform_admins_only(client, alice, bob, admin):
    ds = await create_dataset(client, alice.headers)
    for headers in (alice.headers, bob.headers):
        for action in ("suspend", "unsuspend"):
            r = await client.post(f"/v1/admin/datasets/{ds['dataset_id']}/{action}", headers=headers)
            assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    assert (await client.post(f"/v1/admin/datasets/{ds['dataset_id']}/suspend")).status_code == 401
    assert (await client.post("/v1/admin/datasets/dset_nonexistent/suspend", headers=admin)).status_code == 404
    await client.delete(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers)
    assert (await client.post(f"/v1/admin/datasets/{ds['dataset_id']}/suspend", headers=admin)).status_code == 404


async def test_the_owner_may_delete_a_suspended_dataset(client, alice, admin):
    ds = await create_dataset(client, alice.headers)
    await client.post(f"/v1/admin/datasets/{ds['dataset_id']}/suspend", headers=admin)
    assert (await client.delete(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers)).status_code == 200
    assert (await client.get(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers)).status_code == 404


async def test_everything_of_a_deleted_dataset_answers_404(client, alice, admin, service):
    ds = await create_dataset(client, alice.headers, schema=SCHEMA)
    up = await upload(client, alice.headers, ds["dataset_id"], b"Invoice 0425 from Globex.\n")
    approved = (await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)).json()["data"]
    await service.services.pipeline.wait_idle()
    imp = await run_import(client, service, alice.headers, ds["dataset_id"], jsonl({"name": "Ann", "age": 31}))
    gets = [f"/v1/objects/{up['object_id']}", f"/v1/objects/{up['object_id']}/download-url", f"/v1/jobs/{approved['job_id']}",
            f"/v1/imports/{imp['import_id']}", f"/v1/datasets/{ds['dataset_id']}/imports/{imp['import_id']}"]
    for path in gets:
        assert (await client.get(path, headers=alice.headers)).status_code == 200, path

    assert (await client.delete(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers)).status_code == 200
    for path in gets:
        r = await client.get(path, headers=alice.headers)
        assert r.status_code == 404 and error_of(r)["code"] == "not_found", path
    for path in (f"/v1/objects/{up['object_id']}/confirm",):
        assert (await client.post(path, headers=alice.headers)).status_code == 404
    assert (await client.delete(f"/v1/objects/{up['object_id']}", headers=alice.headers)).status_code == 404


async def test_catalog_lists_only_what_a_buyer_can_use(client, alice, bob, service):
    empty = await create_dataset(client, alice.headers, name="listed but empty", visibility="listed", schema=SCHEMA)
    usable = await create_dataset(client, alice.headers, name="survey", visibility="listed", schema=SCHEMA)
    withdrawn = {status: await create_dataset(client, alice.headers, name=status, visibility="listed", schema=SCHEMA)
                 for status in ("paused", "archived")}
    private = await create_dataset(client, alice.headers, name="private", schema=SCHEMA)
    for ds in (usable, *withdrawn.values(), private):
        imp = await run_import(client, service, alice.headers, ds["dataset_id"], jsonl({"name": "Ann", "age": 31}))
        assert imp["status"] == "complete"
    for status, ds in withdrawn.items():
        r = await client.patch(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers, json={"status": status})
        assert r.json()["data"]["status"] == status
    assert await _status(client, alice.headers, empty["dataset_id"]) == "draft"

    items = (await client.get("/v1/catalog/datasets", headers=bob.headers)).json()["data"]["datasets"]
    assert [i["dataset_id"] for i in items] == [usable["dataset_id"]]
    assert items[0]["status"] == "active" and items[0]["total_datapoint_count"] == 1
