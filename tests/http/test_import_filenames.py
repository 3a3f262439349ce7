"""Import filenames are cleaned as upload filenames are (issue 17, point 8): a ``%00`` (NUL)
or any other control character in the URL's file name is not kept, nor is a directory."""

from __future__ import annotations

from tests.conftest import create_dataset, error_of
from tests.http.uploads_helpers import initiate


async def _import_name(client, headers, dataset_id: str, raw: str):
    r = await client.get(f"/v1/datasets/{dataset_id}/upload-url/{raw}", headers=headers)
    if r.status_code != 200:
        return r
    imp = (await client.get(f"/v1/imports/{r.json()['data']['import_id']}", headers=headers)).json()["data"]
    return imp["filename"]


async def test_import_filenames_lose_nul_and_control_characters_like_upload_filenames(client, alice):
    ds = (await create_dataset(client, alice.headers, name="Names"))["dataset_id"]
    cases = {
        "people%00.jsonl": "people.jsonl",
        "peo%00ple.csv": "people.csv",
        "%01people%1F%7F.jsonl": "people.jsonl",
        "people.jsonl%00": "people.jsonl",
        "dir%5Cpeople.jsonl": "people.jsonl",
        "%C3%A9t%C3%A9.jsonl": "été.jsonl",
    }
    for raw, cleaned in cases.items():
        assert await _import_name(client, alice.headers, ds, raw) == cleaned, raw
        # An upload given the same (decoded) name keeps the same name.
        from urllib.parse import unquote

        r = await initiate(client, alice.headers, ds, b"x", filename=unquote(raw))
        assert r.status_code == 201, r.text
        obj = (await client.get(f"/v1/objects/{r.json()['data']['object_id']}", headers=alice.headers)).json()["data"]
        assert obj["original_filename"] == cleaned


async def test_an_import_filename_of_nothing_but_control_characters_is_a_400(client, alice):
    ds = (await create_dataset(client, alice.headers, name="Names"))["dataset_id"]
    for raw in ("%00%01", "%00.jsonl%00x", "people.jsonl%00.exe"):
        r = await _import_name(client, alice.headers, ds, raw)
        assert not isinstance(r, str), raw
        assert r.status_code == 400, (raw, r.text)
        assert "filename" in error_of(r)["details"]["fields"]
