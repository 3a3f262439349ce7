"""The admin review queue as the console pages it: filters, oldest first, arrivals, bulk approval."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import create_dataset, error_of, make_config, signup
from tests.http.review_helpers import ADMIN, QUEUE, admin_login, image_bytes, mixed_dataset, pdf_bytes, stage
from tests.http.uploads_helpers import initiate, sha

TEXT = b"Invoice 0425 from Globex Corporation. Total due: 1,234.00 EUR.\n"


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN, **{"pipeline.retry_backoff_seconds": 0.05})


@pytest.fixture(name="admin")
async def _admin(client):
    return await admin_login(client)


async def _ids(client, admin, **params):
    r = await client.get(QUEUE, headers=admin, params=params)
    assert r.status_code == 200, r.text
    return [o["object_id"] for o in r.json()["data"]["objects"]]


async def test_oldest_first_pages_in_upload_order_and_polling_picks_up_arrivals(client, admin, alice):
    ds = await create_dataset(client, alice.headers)
    # Initiated first, confirmed last: it joins the queue when its upload is confirmed.
    data = TEXT + b"late\n"
    late = (await initiate(client, alice.headers, ds["dataset_id"], data, checksum_sha256=sha(data))).json()["data"]
    first = [await stage(client, alice.headers, ds["dataset_id"], TEXT + bytes([65 + i]), f"f{i}.txt", "text/plain") for i in range(3)]

    assert await _ids(client, admin, order="oldest") == first
    assert await _ids(client, admin) == first[::-1]  # the API's usual order is unchanged

    seen, cursor, poll = [], None, None
    while True:
        page = (await client.get(QUEUE, headers=admin, params={"order": "oldest", "limit": 2, **({"cursor": cursor} if cursor else {})})).json()["data"]
        seen += [o["object_id"] for o in page["objects"]]
        poll = page["poll_cursor"]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == first

    assert (await client.put(late["upload_url"], content=data)).status_code == 200
    assert (await client.post(f"/v1/objects/{late['object_id']}/confirm", headers=alice.headers)).status_code == 200
    newer = await stage(client, alice.headers, ds["dataset_id"], TEXT + b"new", "new.txt", "text/plain")
    arrived = (await client.get(QUEUE, headers=admin, params={"order": "oldest", "cursor": poll})).json()["data"]
    assert [o["object_id"] for o in arrived["objects"]] == [late["object_id"], newer]
    quiet = (await client.get(QUEUE, headers=admin, params={"order": "oldest", "cursor": arrived["poll_cursor"]})).json()["data"]
    assert quiet["objects"] == [] and quiet["poll_cursor"] == arrived["poll_cursor"] and quiet["has_more"] is False


async def test_decided_objects_leave_the_waiting_queue_without_shifting_a_page(client, admin, alice):
    ds = await create_dataset(client, alice.headers)
    ids = [await stage(client, alice.headers, ds["dataset_id"], TEXT + bytes([65 + i]), f"f{i}.txt", "text/plain") for i in range(4)]
    page = (await client.get(QUEUE, headers=admin, params={"order": "oldest", "limit": 2})).json()["data"]
    for oid in ids[:2]:  # decide what the first page showed, then ask for the next page
        assert (await client.post(f"{QUEUE}/{oid}/reject", headers=admin, json={"reason": "test"})).status_code == 200
    nxt = (await client.get(QUEUE, headers=admin, params={"order": "oldest", "limit": 2, "cursor": page["next_cursor"]})).json()["data"]
    assert [o["object_id"] for o in nxt["objects"]] == ids[2:]
    assert await _ids(client, admin, order="oldest") == ids[2:]
    assert await _ids(client, admin, order="oldest", review_state="rejected") == ids[:2]


async def test_filters_by_tenant_dataset_modality_and_age(client, admin, alice):
    bob = await signup(client)
    mine = await mixed_dataset(client, alice.headers, "Scans")
    other = await mixed_dataset(client, alice.headers, "Notes")
    theirs = await mixed_dataset(client, bob.headers, "Bob's")
    png = await stage(client, alice.headers, mine["dataset_id"], image_bytes((20, 10)), "scan.png", "image/png")
    pdf = await stage(client, alice.headers, mine["dataset_id"], pdf_bytes(["one"]), "doc.pdf", "application/pdf")
    txt = await stage(client, alice.headers, other["dataset_id"], TEXT, "note.txt", "text/plain")
    csv = await stage(client, bob.headers, theirs["dataset_id"], b"a,b\n1,2\n", "t.csv", "text/csv")

    assert await _ids(client, admin, order="oldest") == [png, pdf, txt, csv]
    assert await _ids(client, admin, order="oldest", tenant_id=bob.tenant_id) == [csv]
    assert await _ids(client, admin, order="oldest", dataset_id=mine["dataset_id"]) == [png, pdf]
    assert await _ids(client, admin, order="oldest", modality="image") == [png]
    assert await _ids(client, admin, order="oldest", modality="document") == [pdf]
    assert await _ids(client, admin, order="oldest", modality="text") == [txt]
    assert await _ids(client, admin, order="oldest", modality="tabular") == [csv]
    assert await _ids(client, admin, modality="audio") == []
    assert await _ids(client, admin, order="oldest", tenant_id=alice.tenant_id, modality="text", dataset_id=other["dataset_id"]) == [txt]

    objs = {o["object_id"]: o for o in (await client.get(QUEUE, headers=admin)).json()["data"]["objects"]}
    cut = objs[txt]["uploaded_at"]  # from (inclusive) and to (exclusive) split the queue there
    assert await _ids(client, admin, order="oldest", uploaded_to=cut) == [png, pdf]
    assert await _ids(client, admin, order="oldest", uploaded_from=cut) == [txt, csv]
    assert await _ids(client, admin, uploaded_from=cut, uploaded_to=objs[csv]["uploaded_at"]) == [txt]
    same_instant = datetime.fromisoformat(cut).astimezone(timezone(timedelta(hours=5))).isoformat()  # written at +05:00
    assert await _ids(client, admin, order="oldest", uploaded_to=same_instant) == [png, pdf]


@pytest.mark.parametrize(("params", "field"), [
    ({"modality": "hologram"}, "modality"),
    ({"order": "random"}, "order"),
    ({"uploaded_from": "yesterday"}, "uploaded_from"),
    ({"uploaded_to": "2026-11-02T08:00:00"}, "uploaded_to"),  # no time zone: ambiguous
    ({"tenant_id": "t" * 65}, "tenant_id"),
    ({"review_state": "pending"}, "review_state"),
    ({"cursor": "not-a-cursor"}, "cursor"),
])
async def test_bad_queue_parameters_are_400_naming_the_field(client, admin, params, field):
    r = await client.get(QUEUE, headers=admin, params=params)
    assert r.status_code == 400
    assert field in error_of(r)["details"]["fields"]


async def test_a_reviewer_sees_who_sent_what_and_when_it_expires(client, admin, alice, service):
    ds = await create_dataset(client, alice.headers, name="AP Invoices")
    a = await stage(client, alice.headers, ds["dataset_id"], TEXT, "a.txt", "text/plain")
    b = await stage(client, alice.headers, ds["dataset_id"], TEXT + b"b", "b.txt", "text/plain")
    assert (await client.post(f"{QUEUE}/{b}/claim", headers=admin)).status_code == 200
    objs = {o["object_id"]: o for o in (await client.get(QUEUE, headers=admin)).json()["data"]["objects"]}
    window = service.services.cfg.review.window_seconds
    uploaded = datetime.fromisoformat(objs[a]["uploaded_at"])
    assert datetime.fromisoformat(objs[a]["review_expires_at"]) - uploaded == timedelta(seconds=window)
    assert objs[b]["review_state"] == "under_review" and objs[b]["review_expires_at"] is None  # a claimed object waits
    me = (await client.get("/v1/me", headers=alice.headers)).json()["data"]
    assert objs[a]["tenant_name"] == me["tenant"]["name"] and objs[a]["dataset_name"] == "AP Invoices"
    assert objs[a]["modality"] == "text" and objs[a]["tenant_id"] == alice.tenant_id
    assert "poll_cursor" not in (await client.get(QUEUE, headers=admin)).json()["data"]  # newest first: nothing to poll


async def test_bulk_approval_decides_each_object_alone(client, admin, alice, service):
    ds = await create_dataset(client, alice.headers)
    ids = [await stage(client, alice.headers, ds["dataset_id"], TEXT + bytes([65 + i]), f"f{i}.txt", "text/plain") for i in range(3)]
    assert (await client.post(f"{QUEUE}/{ids[2]}/reject", headers=admin)).status_code == 200
    r = await client.post(f"{QUEUE}/approve/batch", headers=admin, json={"object_ids": [ids[0], "obj_missing", ids[2], ids[1]]})
    assert r.status_code == 200, r.text
    results = r.json()["data"]["results"]
    assert [(x["index"], x["object_id"], x["ok"]) for x in results] == [
        (0, ids[0], True), (1, "obj_missing", False), (2, ids[2], False), (3, ids[1], True),
    ]
    assert results[1]["error"]["code"] == "not_found"
    assert results[2]["error"]["code"] == "conflict" and results[2]["error"]["details"]["review_state"] == "rejected"
    jobs = {results[0]["data"]["job_id"], results[3]["data"]["job_id"]}
    assert all(j.startswith("job_") for j in jobs) and len(jobs) == 2
    await service.services.pipeline.wait_idle()
    for oid in (ids[0], ids[1]):
        obj = (await client.get(f"/v1/objects/{oid}", headers=alice.headers)).json()["data"]
        assert obj["status"] == "active" and obj["review_state"] == "approved"


@pytest.mark.parametrize("body", [{"object_ids": []}, {"object_ids": ["obj_x"] * 101}, {"object_ids": [5]}, {}, {"object_ids": "obj_x"}])
async def test_bulk_approval_refuses_a_malformed_list(client, admin, body):
    r = await client.post(f"{QUEUE}/approve/batch", headers=admin, json=body)
    assert r.status_code == 400 and "object_ids" in error_of(r)["details"]["fields"]


async def test_queue_preview_and_bulk_approval_are_admin_only(client, alice):
    ds = await create_dataset(client, alice.headers)
    oid = await stage(client, alice.headers, ds["dataset_id"], TEXT, "a.txt", "text/plain")
    for method, path, body in [("GET", QUEUE, None), ("GET", f"{QUEUE}/{oid}/preview", None),
                               ("GET", f"{QUEUE}/{oid}/preview/image", None),
                               ("POST", f"{QUEUE}/approve/batch", {"object_ids": [oid]})]:
        r = await client.request(method, path, headers=alice.headers, json=body)
        assert r.status_code == 403, (method, path)
        assert (await client.request(method, path, json=body)).status_code == 401
    obj = (await client.get(f"/v1/objects/{oid}", headers=alice.headers)).json()["data"]
    assert obj["review_state"] == "staged"
