"""``ipto search`` and ``ipto access``, and the client's search/retrieve methods, against a real server."""

from __future__ import annotations

import hashlib

from engine.client import AsyncClient
from tests.cli.conftest import PASSWORD, json_out, one_error_line
from tests.conftest import signup

TEXT = "Okapi census of the Ituri forest: 412 okapis counted by the rangers.\n"


async def _published(ipto, admin_cli, tmp_path, service) -> tuple[str, str]:
    dsid = json_out(await ipto("datasets", "create", "Census", "--visibility", "listed", "--json"))["dataset_id"]
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "census.txt").write_text(TEXT)
    files = json_out(await ipto("upload", str(tmp_path / "up"), "--dataset", dsid, "--json"))["files"]
    object_id = files[0]["object_id"]
    json_out(await admin_cli("review", "approve", object_id, "--json"))
    await service.services.pipeline.wait_idle()
    return dsid, object_id


async def test_a_buyer_searches_and_retrieves_with_the_cli(ipto, admin_cli, provider, client, tmp_path, service):
    dsid, object_id = await _published(ipto, admin_cli, tmp_path, service)
    buyer = await signup(client, password=PASSWORD)
    them = ipto.as_user("buyer")
    assert (await them("login", "--email", buyer.email, "--password", PASSWORD)).exit_code == 0

    page = json_out(await them("search", "okapi rangers", "--mode", "lexical", "--json"))
    (hit,) = page["results"]
    assert hit["object_id"] == object_id and hit["dataset_id"] == dsid
    assert [hit["snippet"][s:e] for s, e in hit["highlights"]] == ["Okapi", "okapis", "rangers"] or \
        [hit["snippet"][s:e].lower() for s, e in hit["highlights"]] == ["okapi", "rangers"]
    human = await them("search", "okapi")
    assert human.exit_code == 0 and "census.txt" in human.stdout and "Ituri forest" in human.stdout

    out = tmp_path / "got.txt"
    granted = json_out(await them("access", object_id, "--output", str(out), "--search-id", page["search_id"],
                                  "--result-id", hit["result_id"], "--json"))
    assert out.read_text() == TEXT and granted["file"] == str(out)
    assert granted["charge"] == {"amount_micros": 0, "currency": "USD"} and granted["access_id"].startswith("acc_")

    failed = await them("search", "okapi AND")
    assert failed.exit_code == 1 and "invalid_query" in one_error_line(failed)
    failed = await them("access", "obj_doesnotexist000000000", "--url-only")
    assert failed.exit_code == 1 and "not_found" in one_error_line(failed)


async def test_the_client_pages_through_a_search_and_retrieves(ipto, admin_cli, provider, client, tmp_path, service):
    _, object_id = await _published(ipto, admin_cli, tmp_path, service)
    buyer = await signup(client, password=PASSWORD)
    async with AsyncClient(service.url, token=buyer.token) as api:
        results = [r async for r in api.iter_search("okapi OR census", mode="lexical", page_size=1)]
        assert [r["object_id"] for r in results] == [object_id] and results[0]["search_id"].startswith("srch_")
        granted, path = await api.retrieve(object_id, tmp_path)
        assert path == tmp_path / "census.txt" and path.read_text() == TEXT
        assert granted["checksum_sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()
