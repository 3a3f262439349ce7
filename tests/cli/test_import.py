"""``ipto import FILE --dataset ID --wait`` (V4 record imports), ``ipto imports …``,
``ipto datasets set-schema|datapoints``."""

from __future__ import annotations

import json

from tests.cli.conftest import json_out, one_error_line

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}
PEOPLE = [{"name": "Ann", "age": 31}, {"name": "Bob", "age": 42}, {"name": "Cy", "age": 7}]


def _jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


async def _dataset(ipto, tmp_path, schema=True) -> str:
    args = ["datasets", "create", "People", "--source-modality", "tabular", "--json"]
    if schema:
        (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
        args += ["--schema", str(tmp_path / "schema.json")]
    return json_out(await ipto(*args))["dataset_id"]


async def test_import_jsonl_and_wait_until_complete(ipto, provider, tmp_path):
    dsid = await _dataset(ipto, tmp_path)
    imp = json_out(await ipto("import", _jsonl(tmp_path / "people.jsonl", PEOPLE), "--dataset", dsid, "--wait",
                              "--poll-interval", "0.1", "--json"))
    assert imp["status"] == "complete" and imp["accepted_count"] == 3 and imp["rejected_count"] == 0
    assert imp["import_id"].startswith("imp_") and imp["dataset_id"] == dsid and imp["filename"] == "people.jsonl"

    datapoints = json_out(await ipto("datasets", "datapoints", dsid, "--json"))
    assert len(datapoints) == 3
    assert json_out(await ipto("datasets", "get", dsid, "--json"))["total_datapoint_count"] == 3
    listed = json_out(await ipto("imports", "list", "--dataset", dsid, "--json"))
    assert [i["import_id"] for i in listed] == [imp["import_id"]]
    assert json_out(await ipto("imports", "get", imp["import_id"], "--json"))["status"] == "complete"


async def test_partial_import_exits_1_unless_allowed(ipto, provider, tmp_path):
    dsid = await _dataset(ipto, tmp_path)
    records = [PEOPLE[0], {"name": "Bad", "age": "old"}, PEOPLE[1]]
    path = _jsonl(tmp_path / "mixed.jsonl", records)
    r = await ipto("import", path, "--dataset", dsid, "--wait", "--poll-interval", "0.1", "--json")
    assert r.exit_code == 1
    imp = json.loads(r.stdout)
    assert imp["status"] == "partial" and imp["accepted_count"] == 2 and imp["rejected_count"] == 1
    assert imp["errors"][0]["line"] == 2 and imp["errors"][0]["field"]
    why = r.stderr.strip().splitlines()[-1]  # stdout holds the JSON; stderr says why the exit code is 1
    assert why == (f"ipto: import {imp['import_id']} ended partial: 1 of 3 records were rejected (2 accepted; errors lists"
                   " the rejected ones). Exit 1 because not every record was accepted; --allow-partial accepts that")

    again = await ipto("import", path, "--dataset", dsid, "--wait", "--poll-interval", "0.1", "--allow-partial")
    assert again.exit_code == 0, again.output
    assert "partial" in again.stdout and "rejected records" in again.stdout
    assert json_out(await ipto("datasets", "get", dsid, "--json"))["total_datapoint_count"] == 4


async def test_no_schema_means_pending_schema_then_set_schema_and_import_csv(ipto, provider, tmp_path):
    dsid = await _dataset(ipto, tmp_path, schema=False)
    r = await ipto("import", _jsonl(tmp_path / "p.jsonl", PEOPLE), "--dataset", dsid, "--wait", "--poll-interval", "0.1", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["status"] == "pending_schema"
    assert "ended pending_schema: the dataset has no schema" in r.stderr

    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    assert (await ipto("datasets", "set-schema", dsid, str(tmp_path / "schema.json"))).exit_code == 0
    (tmp_path / "people.csv").write_text("name,age\nAnn,31\nBob,42\n")
    imp = json_out(await ipto("import", str(tmp_path / "people.csv"), "--dataset", dsid, "--wait", "--poll-interval", "0.1", "--json"))
    assert imp["status"] == "complete" and imp["accepted_count"] == 2


async def test_live_status_lines_when_waiting(ipto, provider, tmp_path):
    dsid = await _dataset(ipto, tmp_path)
    r = await ipto("import", _jsonl(tmp_path / "people.jsonl", PEOPLE), "--dataset", dsid, "--wait", "--poll-interval", "0.05")
    assert r.exit_code == 0, r.output
    assert "complete" in r.stderr.splitlines()[-1]  # the last status line
    assert "accepted_count" in r.stdout


async def test_import_without_wait_returns_the_import_at_once(ipto, provider, tmp_path):
    dsid = await _dataset(ipto, tmp_path)
    imp = json_out(await ipto("import", _jsonl(tmp_path / "people.jsonl", PEOPLE), "--dataset", dsid, "--json"))
    assert imp["import_id"].startswith("imp_") and imp["status"] in ("queued", "processing", "complete")


async def test_unsupported_record_file_is_refused_by_the_server(ipto, provider, tmp_path):
    dsid = await _dataset(ipto, tmp_path)
    (tmp_path / "people.xml").write_text("<people/>")
    r = await ipto("import", str(tmp_path / "people.xml"), "--dataset", dsid)
    assert r.exit_code == 1 and "invalid_request" in one_error_line(r)
