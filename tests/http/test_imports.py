"""V4 record imports (seed 004): statuses, formats, errors, order, restarts, isolation.

Local blobs: the engine's PUT route queues a file as it arrives. S3: the file goes to the
bucket and the engine finds it when it looks (every few seconds, on reading an
``uninitialised`` import, in ``wait_idle``); see :mod:`engine.imports`.
"""

from __future__ import annotations

import contextlib
import os

import orjson
import pytest
import trio

from engine.service import run_service
from tests.conftest import S3, create_dataset, error_of, make_config
from tests.rawdb import query

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "score": {"type": "number"},
        "member": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age"],
}


def jsonl(*records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in records)


async def start_import(client, headers, dataset_id, data: bytes, filename="records.jsonl"):
    r = await client.get(f"/v1/datasets/{dataset_id}/upload-url/{filename}", headers=headers)
    assert r.status_code == 200, r.text
    target = r.json()["data"]
    put = await client.put(target["upload_url"], content=data, headers={"Content-Type": target["content_type"]})
    assert put.status_code == 200, put.text
    return target


@contextlib.asynccontextmanager
async def no_look_at_the_bucket(services):
    """S3: no look for arrived files meanwhile (the engine's looks take this lock), so files
    PUT inside are found together by the next look, none before the others. Local: PUTs
    queue their files themselves; nothing changes."""
    async with services.imports._arrivals_lock:
        yield


async def run_import(client, service, headers, dataset_id, data, filename="records.jsonl"):
    target = await start_import(client, headers, dataset_id, data, filename)
    await service.services.imports.wait_idle()
    r = await client.get(f"/v1/datasets/{dataset_id}/imports/{target['import_id']}", headers=headers)
    return r.json()["data"]


@pytest.fixture(name="dataset")
async def _dataset(client, alice):
    return await create_dataset(client, alice.headers, name="Survey", schema=SCHEMA)


async def all_datapoints(client, headers, dataset_id):
    out, cursor = [], None
    while True:
        params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(f"/v1/datasets/{dataset_id}/datapoints", headers=headers, params=params)).json()["data"]
        out.extend(page["datapoints"])
        if not page["has_more"]:
            return out
        cursor = page["next_cursor"]


async def test_upload_url_contract(client, alice, dataset):
    r = await client.get(f"/v1/datasets/{dataset['dataset_id']}/upload-url/people.jsonl", headers=alice.headers)
    data = r.json()["data"]
    assert set(data) == {"upload_url", "http_method", "content_type", "import_id", "expires_at"}
    assert data["http_method"] == "PUT" and data["content_type"] == "application/x-ndjson" and data["import_id"].startswith("imp_")
    csv_url = (await client.get(f"/v1/datasets/{dataset['dataset_id']}/upload-url/people.csv", headers=alice.headers)).json()["data"]
    assert csv_url["content_type"] == "text/csv"
    imp = (await client.get(f"/v1/imports/{data['import_id']}", headers=alice.headers)).json()["data"]
    assert imp["status"] == "uninitialised" and imp["accepted_count"] == 0 and imp["errors"] == []
    for name in ("people.xlsx", "people", "people.json"):
        r = await client.get(f"/v1/datasets/{dataset['dataset_id']}/upload-url/{name}", headers=alice.headers)
        assert r.status_code == 400, name


async def test_complete_jsonl_import(client, service, alice, dataset):
    records = [{"name": f"p{i}", "age": i, "tags": ["a"]} for i in range(5)]
    imp = await run_import(client, service, alice.headers, dataset["dataset_id"], jsonl(*records))
    assert imp["status"] == "complete" and imp["accepted_count"] == 5 and imp["rejected_count"] == 0
    assert imp["errors"] == [] and imp["reason"] is None and imp["started_at"] and imp["finished_at"]
    points = await all_datapoints(client, alice.headers, dataset["dataset_id"])
    assert [p["data"] for p in points] == records
    assert [p["line"] for p in points] == [1, 2, 3, 4, 5]
    ds = (await client.get(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers)).json()["data"]
    assert ds["total_datapoint_count"] == 5 and ds["status"] == "active"


async def test_partial_import_keeps_accepted_records_and_explains_rejections(client, service, alice, dataset):
    data = jsonl({"name": "ok", "age": 1}, {"name": "neg", "age": -5}, {"age": 3}, b"{not json", b"[1, 2]",
                 {"name": "typed", "age": "old"}, {"name": "ok2", "age": 2})
    imp = await run_import(client, service, alice.headers, dataset["dataset_id"], data)
    assert imp["status"] == "partial" and imp["accepted_count"] == 2 and imp["rejected_count"] == 5
    errors = {e["line"]: e for e in imp["errors"]}
    assert set(errors) == {2, 3, 4, 5, 6}
    assert errors[2]["field"] == "age" and "0" in errors[2]["message"]
    assert errors[3]["field"] == "name" and errors[3]["message"] == "is required"
    assert errors[4]["field"] is None and "JSON" in errors[4]["message"]
    assert errors[5]["message"] == "a record must be a JSON object"
    assert errors[6]["field"] == "age" and "integer" in errors[6]["message"]
    # a later import appends
    imp2 = await run_import(client, service, alice.headers, dataset["dataset_id"], jsonl({"name": "later", "age": 9}))
    assert imp2["status"] == "complete"
    points = await all_datapoints(client, alice.headers, dataset["dataset_id"])
    assert [p["data"]["name"] for p in points] == ["ok", "ok2", "later"]
    ds = (await client.get(f"/v1/datasets/{dataset['dataset_id']}", headers=alice.headers)).json()["data"]
    assert ds["total_datapoint_count"] == 3


async def test_csv_import_coerces_types_by_schema(client, service, alice, dataset):
    data = (b"name,age,score,member,tags\n"
            b"ann,31,4.5,true,\"[\"\"x\"\"]\"\n"
            b"bob,40,7,no,\n"
            b"\"multi\nline\",22,1e3,1,\n"
            b"cat,abc,1.0,true,\n"
            b"dan,5,high,true,\n"
            b"eve,6,1,maybe,\n"
            b"fay,7\n")
    imp = await run_import(client, service, alice.headers, dataset["dataset_id"], data, "people.csv")
    assert imp["status"] == "partial", imp
    assert imp["accepted_count"] == 3 and imp["rejected_count"] == 4
    points = await all_datapoints(client, alice.headers, dataset["dataset_id"])
    assert [p["data"] for p in points] == [
        {"name": "ann", "age": 31, "score": 4.5, "member": True, "tags": ["x"]},
        {"name": "bob", "age": 40, "score": 7, "member": False},
        {"name": "multi\nline", "age": 22, "score": 1000.0, "member": True},
    ]
    errors = {e["line"]: e for e in imp["errors"]}
    assert errors[6]["field"] == "age" and "integer" in errors[6]["message"]
    assert errors[7]["field"] == "score" and "number" in errors[7]["message"]
    assert errors[8]["field"] == "member" and "boolean" in errors[8]["message"]
    assert errors[9]["field"] is None and "cells" in errors[9]["message"]


async def test_errors_are_capped_at_1000_with_the_total_counted(client, service, alice, dataset):
    data = jsonl(*([{"name": "bad", "age": -1}] * 1500), {"name": "good", "age": 1})
    imp = await run_import(client, service, alice.headers, dataset["dataset_id"], data)
    assert imp["status"] == "partial" and imp["rejected_count"] == 1500 and imp["accepted_count"] == 1
    assert len(imp["errors"]) == 1000 and imp["errors"][0]["line"] == 1 and imp["errors"][-1]["line"] == 1000


async def test_pending_schema_and_no_silent_rerun(client, service, alice):
    ds = await create_dataset(client, alice.headers, name="no schema yet")
    imp = await run_import(client, service, alice.headers, ds["dataset_id"], jsonl({"name": "a", "age": 1}))
    assert imp["status"] == "pending_schema" and "schema" in imp["reason"]
    r = await client.put(f"/v1/datasets/{ds['dataset_id']}/schema", headers=alice.headers, json=SCHEMA)
    assert r.status_code == 200 and r.json()["data"]["schema"] == SCHEMA
    await service.services.imports.wait_idle()
    again = (await client.get(f"/v1/imports/{imp['import_id']}", headers=alice.headers)).json()["data"]
    assert again["status"] == "pending_schema" and again["accepted_count"] == 0
    redo = await run_import(client, service, alice.headers, ds["dataset_id"], jsonl({"name": "a", "age": 1}))
    assert redo["status"] == "complete"


@pytest.mark.parametrize(
    ("data", "filename", "reason"),
    [
        (b"", "e.jsonl", "empty"),
        (os.urandom(4096).replace(b"\n", b"\x00"), "bin.jsonl", "UTF-8"),
        (b"this is just prose\nwith no json at all\n", "prose.jsonl", "not JSON lines"),
        (b"", "e.csv", "no CSV header"),
        (b"colour,size\nred,big\n", "other.csv", "no CSV header"),
        (jsonl({"name": "x", "age": -1}, {"name": "y", "age": -2}), "all-bad.jsonl", "every record"),
    ],
    ids=["empty", "binary", "prose", "empty-csv", "csv-without-header", "all-rejected"],
)
async def test_failed_imports_say_why(client, service, alice, dataset, data, filename, reason):
    imp = await run_import(client, service, alice.headers, dataset["dataset_id"], data, filename)
    assert imp["status"] == "failed" and reason in imp["reason"], imp
    assert imp["accepted_count"] == 0


async def test_bad_schemas_are_refused_naming_the_problem(client, alice, dataset):
    r = await client.post("/v1/datasets", headers=alice.headers,
                          json={"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "strang"}}}})
    assert r.status_code == 400 and "schema" in error_of(r)["details"]["fields"]
    assert "properties/a/type" in error_of(r)["message"]
    r = await client.put(f"/v1/datasets/{dataset['dataset_id']}/schema", headers=alice.headers, json={"schema": {"type": "array"}})
    assert r.status_code == 400
    r = await client.put(f"/v1/datasets/{dataset['dataset_id']}/schema", headers=alice.headers, json={"schema": 5})
    assert r.status_code == 400


async def test_imports_run_one_at_a_time_in_arrival_order(client, service, alice, dataset):
    a = (await client.get(f"/v1/datasets/{dataset['dataset_id']}/upload-url/a.jsonl", headers=alice.headers)).json()["data"]
    b = (await client.get(f"/v1/datasets/{dataset['dataset_id']}/upload-url/b.jsonl", headers=alice.headers)).json()["data"]
    c = (await client.get(f"/v1/datasets/{dataset['dataset_id']}/upload-url/c.jsonl", headers=alice.headers)).json()["data"]
    big = jsonl(*({"name": f"b{i}", "age": i} for i in range(5000)))
    # URLs were requested a, b, c; files arrive b, c, a: arrival decides
    for n, (target, data) in enumerate(((b, big), (c, jsonl({"name": "c", "age": 1})), (a, jsonl({"name": "a", "age": 1})))):
        if S3 and n:
            # S3 dates a file's arrival (LastModified) in whole seconds, and files of the same
            # second are taken in URL order: a second apart, the arrival order is S3's too.
            await trio.sleep(1.1)
        assert (await client.put(target["upload_url"], content=data)).status_code == 200
    statuses = {t["import_id"]: (await client.get(f"/v1/imports/{t['import_id']}", headers=alice.headers)).json()["data"]["status"]
                for t in (a, c)}
    assert set(statuses.values()) <= {"queued", "processing", "complete"}
    await service.services.imports.wait_idle()
    points = await all_datapoints(client, alice.headers, dataset["dataset_id"])
    order = [p["import_id"] for p in points]
    assert order == [b["import_id"]] * 5000 + [c["import_id"], a["import_id"]]
    got = [(await client.get(f"/v1/imports/{t['import_id']}", headers=alice.headers)).json()["data"] for t in (b, c, a)]
    assert [g["status"] for g in got] == ["complete"] * 3
    assert got[0]["finished_at"] <= got[1]["started_at"] and got[1]["finished_at"] <= got[2]["started_at"]
    listed = (await client.get(f"/v1/datasets/{dataset['dataset_id']}/imports", headers=alice.headers)).json()["data"]
    assert [i["import_id"] for i in listed["imports"]] == [c["import_id"], b["import_id"], a["import_id"]]


async def test_url_is_single_use_and_tenants_are_isolated(client, service, alice, bob, dataset):
    """Local: the URL takes one file; a second PUT is refused (403). S3: a presigned URL
    cannot be made single-use: a file PUT again before its import starts replaces the first,
    and once the import has run a late PUT changes nothing (engine.imports documents both)."""
    first, second = {"name": "a", "age": 1}, {"name": "b", "age": 2}
    async with no_look_at_the_bucket(service.services):
        target = await start_import(client, alice.headers, dataset["dataset_id"], jsonl(first))
        again = await client.put(target["upload_url"], content=jsonl(second))
    assert again.status_code == (200 if S3 else 403)
    await service.services.imports.wait_idle()
    iid, did = target["import_id"], dataset["dataset_id"]
    imported = second if S3 else first
    assert [p["data"] for p in await all_datapoints(client, alice.headers, did)] == [imported]
    if S3:
        late = await client.put(target["upload_url"], content=jsonl({"name": "c", "age": 3}))
        assert late.status_code == 200  # S3 takes it; the engine does not import it again
        await service.services.imports.wait_idle()
    imp = (await client.get(f"/v1/imports/{iid}", headers=alice.headers)).json()["data"]
    assert imp["status"] == "complete" and imp["accepted_count"] == 1
    for path in (f"/v1/imports/{iid}", f"/v1/datasets/{did}/imports/{iid}", f"/v1/datasets/{did}/imports",
                 f"/v1/datasets/{did}/datapoints", f"/v1/datasets/{did}/upload-url/x.jsonl"):
        assert (await client.get(path, headers=bob.headers)).status_code == 404, path
    assert (await client.put(f"/v1/datasets/{did}/schema", headers=bob.headers, json=SCHEMA)).status_code == 404
    other = await create_dataset(client, alice.headers, name="other", schema=SCHEMA)
    assert (await client.get(f"/v1/datasets/{other['dataset_id']}/imports/{iid}", headers=alice.headers)).status_code == 404
    assert [p["data"] for p in await all_datapoints(client, alice.headers, did)] == [imported]


@pytest.mark.parametrize("stripe_bytes", [None, 700], ids=["one-reader", "striped-readers"])
async def test_queue_order_and_partial_progress_survive_a_restart(tmp_path, monkeypatch, stripe_bytes):
    """Stopped mid-import with more queued behind it: after a restart nothing is lost, nothing doubled, order kept."""
    import httpx

    from engine import imports

    if stripe_bytes:
        monkeypatch.setattr(imports, "CHUNK_BYTES", stripe_bytes)

    cfg = make_config(tmp_path / "data", **{"imports.batch_records": 100})
    real = imports.InsertBatch.apply
    batches = 0

    async def stalling(self, ctx):
        nonlocal batches
        batches += 1
        if batches > 3:  # after three committed batches the process "dies" mid-import
            await trio.sleep_forever()
        return await real(self, ctx)

    monkeypatch.setattr(imports.InsertBatch, "apply", stalling)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(run_service, cfg)
        async with httpx.AsyncClient(base_url=handle.url) as client:
            token = (await client.post("/v1/auth/signup", json={"email": "r@example.com", "password": "long enough pw"})).json()["data"]["token"]
            h = {"Authorization": f"Bearer {token}"}
            ds = (await client.post("/v1/datasets", headers=h, json={"name": "r", "schema": SCHEMA})).json()["data"]["dataset_id"]
            # S3: both files must be queued before the first import stalls its dataset's actor
            # (the stand-in for dying): found by one look, not the first alone
            async with no_look_at_the_bucket(handle.services):
                first = await start_import(client, h, ds, jsonl(*({"name": f"f{i}", "age": i} for i in range(1000))))
                second = await start_import(client, h, ds, jsonl({"name": "s", "age": 1}))
            with trio.fail_after(30):
                while (await client.get(f"/v1/imports/{first['import_id']}", headers=h)).json()["data"]["accepted_count"] < (
                        300 if stripe_bytes is None else 60):
                    await trio.sleep(0.02)
            mid = (await client.get(f"/v1/imports/{first['import_id']}", headers=h)).json()["data"]
            assert mid["status"] == "processing" and (300 if stripe_bytes is None else 60) <= mid["accepted_count"] < 1000
            assert (await client.get(f"/v1/imports/{second['import_id']}", headers=h)).json()["data"]["status"] == "queued"
        nursery.cancel_scope.cancel()  # the service dies with the import half done
    monkeypatch.setattr(imports.InsertBatch, "apply", real)

    async with trio.open_nursery() as nursery:
        handle = await nursery.start(run_service, cfg)
        await handle.services.imports.wait_idle()
        async with httpx.AsyncClient(base_url=handle.url) as client:
            done = (await client.get(f"/v1/imports/{first['import_id']}", headers=h)).json()["data"]
            assert done["status"] == "complete" and done["accepted_count"] == 1000
            points = await all_datapoints(client, h, ds)
            assert [p["data"]["name"] for p in points] == [f"f{i}" for i in range(1000)] + ["s"]
            assert (await client.get(f"/v1/datasets/{ds}", headers=h)).json()["data"]["total_datapoint_count"] == 1001
        handle.stop()


async def test_striped_readers_keep_file_order_and_line_numbers(client, service, alice, dataset, monkeypatch):
    """Large JSONL files are parsed by several child processes in turns; nothing about the result may show it."""
    from engine import imports

    monkeypatch.setattr(imports, "CHUNK_BYTES", 512)  # tiny stripes: many hand-overs between the two readers
    records = []
    for i in range(3000):
        if i % 97 == 0:
            records.append(b"")  # blank lines count as lines
        records.append({"name": f"p{i}", "age": -1 if i % 50 == 7 else i})
    imp = await run_import(client, service, alice.headers, dataset["dataset_id"], jsonl(*records))
    assert imp["status"] == "partial" and imp["accepted_count"] == 3000 - 60 and imp["rejected_count"] == 60
    points = await all_datapoints(client, alice.headers, dataset["dataset_id"])
    expected, line = [], 0
    bad_lines = []
    for record in records:
        line += 1
        if record == b"":
            continue
        if record["age"] < 0:
            bad_lines.append(line)
        else:
            expected.append((line, record["name"]))
    assert [(p["line"], p["data"]["name"]) for p in points] == expected
    assert [e["line"] for e in imp["errors"]] == bad_lines


async def test_schemas_that_would_reach_outside_are_refused(client, alice, dataset):
    """Schemas are compiled offline: a $ref to a URL is a 400, never a request from the engine."""
    url = f"/v1/datasets/{dataset['dataset_id']}/schema"
    r = await client.put(url, headers=alice.headers, json={"schema": {"type": "object", "$ref": "http://169.254.169.254/latest"}})
    assert r.status_code == 400 and "cannot be compiled" in error_of(r)["message"] and "schema" in error_of(r)["details"]["fields"]
    r = await client.put(url, headers=alice.headers, json={"schema": {"$schema": "http://json-schema.org/draft-03/schema#", "type": "object"}})
    assert r.status_code == 400
    local = {"type": "object", "$defs": {"age": {"type": "integer", "minimum": 0}}, "properties": {"age": {"$ref": "#/$defs/age"}}}
    assert (await client.put(url, headers=alice.headers, json={"schema": local})).status_code == 200


async def test_formats_and_nested_required_fields_are_checked(client, service, alice):
    schema = {"type": "object", "required": ["contact"],
              "properties": {"contact": {"type": "object", "required": ["email"],
                                         "properties": {"email": {"type": "string", "format": "email"}}}}}
    ds = (await create_dataset(client, alice.headers, schema=schema))["dataset_id"]
    imp = await run_import(client, service, alice.headers, ds, jsonl(
        {"contact": {"email": "a@example.com"}}, {"contact": {"email": "not an address"}}, {"contact": {}}, {}))
    assert imp["status"] == "partial" and imp["accepted_count"] == 1
    assert [(e["line"], e["field"]) for e in imp["errors"]] == [(2, "contact.email"), (3, "contact.email"), (4, "contact")]
    assert "email" in imp["errors"][0]["message"]
    assert imp["errors"][1]["message"] == imp["errors"][2]["message"] == "is required"


async def test_datapoints_read_back_from_what_is_at_rest(client, service, alice, dataset, cfg):
    """SQLite keeps each batch zstd-packed; chunks written as plain text before packing
    still read the same. PostgreSQL keeps the text (TOAST compresses it)."""
    records = [{"name": f"p{i}", "age": i, "tags": ["é", "\n"]} for i in range(250)]
    await run_import(client, service, alice.headers, dataset["dataset_id"], jsonl(*records))
    before = await all_datapoints(client, alice.headers, dataset["dataset_id"])
    assert [p["data"] for p in before] == records
    if cfg.store_url.startswith("sqlite"):
        import zstandard

        chunks = query(cfg, "SELECT seq, records, packed FROM datapoint_chunks")
        assert chunks and all(text == "" and packed for _, text, packed in chunks)
        for seq, _, packed in chunks:  # back to how chunks were kept before packing
            query(cfg, "UPDATE datapoint_chunks SET records = ?, packed = NULL WHERE seq = ?", zstandard.decompress(packed).decode(), seq)
        assert query(cfg, "SELECT count(*) FROM datapoint_chunks WHERE packed IS NULL") == [(len(chunks),)]
    else:
        (text,) = query(cfg, "SELECT records FROM datapoint_chunks")[0]
        assert text.split("\n") == [orjson.dumps(r).decode() for r in records]
    assert await all_datapoints(client, alice.headers, dataset["dataset_id"]) == before
