"""A string holding NUL (``\\u0000``) in any JSON body is 400 ``invalid_request`` naming the
field, on both stores: PostgreSQL's ``text`` and ``jsonb`` cannot store NUL, and CI's
schemathesis run found ``POST /v1/datasets`` with such a name answering 500 there. The
refusal happens before anything is written, and a backslash followed by ``u0000`` (the
six characters, JSON ``"\\\\u0000"``) is ordinary text; a file name is cleaned instead
(issue 17). A query string with ``%00`` is a 400 too, with the connection kept, and a path
parameter with NUL matches no route: 404 (``GET /v1/objects/obj_%00`` was a 500 on
PostgreSQL, a 404 on SQLite)."""

from __future__ import annotations

import hashlib

import orjson

from tests.conftest import create_dataset, error_of
from tests.http.raw_http import Conn, head

JSON = {"Content-Type": "application/json"}


def refused(response, field: str) -> None:
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == "invalid_request"
    assert error["details"]["fields"] == {field: "must not contain the NUL character"}


async def dataset_names(client, headers) -> list[str]:
    r = await client.get("/v1/datasets", headers=headers)
    assert r.status_code == 200, r.text
    return [d["name"] for d in r.json()["data"]["datasets"]]


async def test_nul_in_a_dataset_name_is_400_and_creates_nothing(client, alice):
    h = {**alice.headers, **JSON, "Idempotency-Key": "nul-name"}
    body = '{"monetization_mode": "open", "name": "\\u0013\\u0001OkVVys\\u0012\\u0000tv"}'  # what schemathesis sent
    refused(await client.post("/v1/datasets", headers=h, content=body), "name")
    assert await dataset_names(client, alice.headers) == []


async def test_nul_anywhere_in_a_body_is_named_by_its_path(client, alice):
    ds = await create_dataset(client, alice.headers, name="Kept")
    h = {**alice.headers, **JSON}
    r = await client.patch(f"/v1/datasets/{ds['dataset_id']}", headers=h, content=b'{"description": "ok\\u0000"}')
    refused(r, "description")
    r = await client.post("/v1/datasets", headers=h,
                          content=b'{"name": "x", "schema": {"type": "object", "properties": {"k\\u0000": {}}}}')
    refused(r, "schema.properties.k\\u0000")  # a key with NUL is named with NUL spelled out
    r = await client.post("/v1/search", headers={**h, "Idempotency-Key": "nul-list"},
                          content=b'{"query": "a", "dataset_ids": ["ds_a", "ds_\\u0000"]}')
    refused(r, "dataset_ids.1")
    assert await dataset_names(client, alice.headers) == ["Kept"]
    r = await client.get(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers)
    assert r.json()["data"].get("description") in (None, "")


async def test_nul_on_the_hot_routes_is_400(client, alice):
    ds = await create_dataset(client, alice.headers)
    data = b"invoice"
    fields = {"filename": "inv\x00oice.txt", "content_type": "text/plain", "size_bytes": len(data),
              "checksum_sha256": hashlib.sha256(data).hexdigest()}
    url = f"/v1/datasets/{ds['dataset_id']}/objects/upload"
    body = orjson.dumps({**fields, "content_type": "text/plain\x00"})
    assert b"\\u0000" in body
    refused(await client.post(url, headers={**alice.headers, **JSON}, content=body), "content_type")
    r = await client.post(url, headers={**alice.headers, **JSON}, content=orjson.dumps(fields))
    assert r.status_code == 201, r.text  # a file name is cleaned, not refused (issue 17)
    obj = (await client.get(f"/v1/objects/{r.json()['data']['object_id']}", headers=alice.headers)).json()["data"]
    assert obj["original_filename"] == "invoice.txt"
    r = await client.post(f"{url}/batch", headers={**alice.headers, **JSON}, content=orjson.dumps({"files": [fields, fields]}))
    assert r.status_code == 200, r.text
    r = await client.post(f"{url}/batch", headers={**alice.headers, **JSON},
                          content=orjson.dumps({"files": [fields, {**fields, "content_type": "text/\x00"}]}))
    refused(r, "files.1.content_type")
    refused(await client.post("/v1/search", headers={**alice.headers, **JSON}, content=b'{"query": "a\\u0000b"}'), "query")


async def test_a_backslash_u0000_as_text_is_kept(client, alice):
    name = "C:\\u0000 folder"  # backslash, then u0000: no NUL
    ds = await create_dataset(client, {**alice.headers, **JSON}, name=name)
    assert "\x00" not in name
    r = await client.get(f"/v1/datasets/{ds['dataset_id']}", headers=alice.headers)
    assert r.json()["data"]["name"] == name


async def test_nul_in_a_path_parameter_is_404_and_in_a_query_string_400(client, alice):
    ds = await create_dataset(client, alice.headers, name="P")
    for path in ("/v1/datasets/ds_%00x", "/v1/objects/obj_%00", "/v1/api-keys/key_%00", "/v1/webhooks/wh_%00",
                 "/v1/imports/imp_%00", "/v1/jobs/job_%00", f"/v1/datasets/{ds['dataset_id']}/objects%00"):
        r = await client.get(path, headers=alice.headers)
        assert r.status_code == 404 and error_of(r)["code"] == "not_found", (path, r.text)
    for path in ("/v1/objects/obj_%00/confirm", "/v1/objects/obj_%00/access", "/v1/datasets/ds_%00/objects/upload"):
        r = await client.post(path, headers={**alice.headers, **JSON}, content=b"{}")  # the hot routes' paths too
        assert r.status_code == 404 and error_of(r)["code"] == "not_found", (path, r.text)
    r = await client.get(f"/v1/datasets/{ds['dataset_id']}/upload-url/people%00.jsonl", headers=alice.headers)
    assert r.status_code == 200, r.text  # an import's file name is cleaned instead (tests/http/test_import_filenames.py)
    for path in ("/v1/datasets?visibility=%00", "/v1/datasets?cursor=%00", "/v1/admin/staged-objects?dataset_id=ds_%00",
                 f"/v1/datasets/{ds['dataset_id']}/objects?status=a%00", "/v1/datasets?unknown=%00"):
        r = await client.get(path, headers=alice.headers)
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_request", (path, r.text)
    r = await client.post("/v1/search?x=%00", headers={**alice.headers, **JSON}, content=b'{"query": "a"}')
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_request", r.text
    r = await client.put("/blobs/%00", content=b"x")
    assert r.status_code in (403, 404), r.text


async def test_a_nul_refusal_keeps_the_connection(service, alice):
    conn = await Conn.open(service.url)
    try:
        body = b'{"parts": []}'
        headers = {"Authorization": alice.headers["Authorization"], "Content-Type": "application/json",
                   "Content-Length": str(len(body))}
        assert await conn.send(head("POST", "/v1/objects/obj_x/confirm?a=%00", conn.host, headers) + body)
        reply = await conn.reply("POST")
        assert reply is not None and reply.status == 400 and not reply.closes, reply
        assert await conn.health_after() == "answered"
    finally:
        await conn.aclose()
