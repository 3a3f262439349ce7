"""``ipto datasets …``: CRUD with --json, lists across pages, errors and exit codes."""

from __future__ import annotations

import pytest

from engine.client.errors import NotFound
from tests.cli.conftest import json_out, one_error_line


async def test_create_list_get_update_delete_with_json(ipto, provider):
    ds = json_out(await ipto("datasets", "create", "AP Invoices 2025", "--description", "Invoice corpus",
                             "--monetization-mode", "premium", "--visibility", "listed", "--json"))
    assert ds["name"] == "AP Invoices 2025" and ds["status"] == "draft"
    assert ds["monetization_mode"] == "premium" and ds["visibility"] == "listed" and ds["tenant_id"] == provider.tenant_id
    dsid = ds["dataset_id"]

    listed = json_out(await ipto("datasets", "list", "--json"))
    assert [d["dataset_id"] for d in listed] == [dsid]
    assert json_out(await ipto("datasets", "get", dsid, "--json"))["description"] == "Invoice corpus"

    updated = json_out(await ipto("datasets", "update", dsid, "--name", "Renamed", "--visibility", "private", "--json"))
    assert updated["name"] == "Renamed" and updated["visibility"] == "private"
    paused = json_out(await ipto("datasets", "update", dsid, "--status", "paused", "--json"))
    assert paused["status"] == "paused"

    assert json_out(await ipto("datasets", "delete", dsid, "--yes", "--json")) == {"dataset_id": dsid, "deleted": True}
    gone = await ipto("datasets", "get", dsid, "--json")
    assert gone.exit_code == 1 and gone.stdout == ""
    assert "not_found" in one_error_line(gone)


async def test_human_output_is_a_table(ipto, provider):
    ds = json_out(await ipto("datasets", "create", "Tables", "--json"))
    r = await ipto("datasets", "list")
    assert r.exit_code == 0
    assert ds["dataset_id"] in r.stdout and "Tables" in r.stdout and "draft" in r.stdout


async def test_lists_follow_cursors_up_to_the_limit(ipto, provider):
    ids = [json_out(await ipto("datasets", "create", f"set {i}", "--json"))["dataset_id"] for i in range(5)]
    newest_first = list(reversed(ids))
    assert [d["dataset_id"] for d in json_out(await ipto("datasets", "list", "--limit", "3", "--json"))] == newest_first[:3]
    assert [d["dataset_id"] for d in json_out(await ipto("datasets", "list", "--all", "--json"))] == newest_first


async def test_a_failed_request_prints_one_line_with_the_request_id(ipto, provider, server_log):
    r = await ipto("datasets", "get", "dset_missing")
    assert r.exit_code == 1
    line = one_error_line(r)
    assert line == line.strip() and "dataset not found" in line and "(not_found, HTTP 404, request_id req_" in line
    request_id = line.rsplit("request_id ", 1)[1].rstrip(")")
    assert request_id in server_log.read_text()  # the same id the server logged


async def test_debug_shows_the_exception_instead(ipto, provider):
    r = await ipto("--debug", "datasets", "get", "dset_missing", catch_exceptions=True)
    assert r.exit_code == 1 and isinstance(r.exception, NotFound)
    assert r.exception.request_id.startswith("req_") and r.exception.status == 404


async def test_server_side_validation_error_names_the_problem(ipto, provider):
    r = await ipto("datasets", "create", "x" * 201)
    assert r.exit_code == 1
    assert "invalid_request" in one_error_line(r)


@pytest.mark.parametrize("args", [
    ("datasets", "create"),
    ("datasets", "create", "x", "--visibility", "everyone"),
    ("datasets", "update", "dset_x"),
    ("datasets", "frobnicate"),
])
async def test_usage_errors_exit_2(ipto, provider, args):
    r = await ipto(*args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output


async def test_every_command_has_help(ipto):
    for args in [(), ("datasets",), ("datasets", "create"), ("upload",), ("import",), ("objects", "download"),
                 ("review", "approve"), ("jobs", "get"), ("login",), ("imports", "list")]:
        r = await ipto(*args, "--help")
        assert r.exit_code == 0 and "Usage:" in r.stdout, args
