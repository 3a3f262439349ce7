"""``ipto review list|get|approve|reject`` as a platform admin, ``ipto jobs get``."""

from __future__ import annotations

import json

from tests.cli.conftest import json_out, one_error_line


async def _uploaded(ipto, tmp_path, *names: str) -> tuple[str, dict[str, str]]:
    dsid = json_out(await ipto("datasets", "create", "Review me", "--json"))["dataset_id"]
    for name in names:
        (tmp_path / "up" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "up" / name).write_text(f"Invoice {name} from Globex Corporation. Total 12.00 EUR.\n")
    files = json_out(await ipto("upload", str(tmp_path / "up"), "--dataset", dsid, "--json"))["files"]
    return dsid, {f["path"].rsplit("/", 1)[1]: f["object_id"] for f in files}


async def test_admin_lists_approves_and_rejects(ipto, admin_cli, provider, tmp_path, service):
    dsid, ids = await _uploaded(ipto, tmp_path, "a.txt", "b.txt")

    queue = json_out(await admin_cli("review", "list", "--review-state", "staged", "--json"))
    assert {o["object_id"] for o in queue} == set(ids.values())
    assert all(o["tenant_id"] == provider.tenant_id for o in queue)
    only_theirs = json_out(await admin_cli("review", "list", "--tenant-id", "tnt_nobody", "--json"))
    assert only_theirs == []

    opened = json_out(await admin_cli("review", "get", ids["a.txt"], "--json"))
    assert opened["review_state"] == "under_review"

    approved = json_out(await admin_cli("review", "approve", ids["a.txt"], "--json"))
    assert approved[0]["review_state"] == "approved" and approved[0]["job_id"].startswith("job_")
    # the provider follows the processing job (GET /v1/jobs is scoped to the object's tenant)
    job = json_out(await ipto("jobs", "get", approved[0]["job_id"], "--wait", "--poll-interval", "0.1", "--json"))
    assert job["status"] == "succeeded" and job["object_id"] == ids["a.txt"]
    assert json_out(await ipto("objects", "get", ids["a.txt"], "--json"))["status"] == "active"

    rejected = json_out(await admin_cli("review", "reject", ids["b.txt"], "--reason", "spam", "--json"))
    assert rejected == [{"object_id": ids["b.txt"], "review_state": "rejected", "reason": "spam"}]
    assert json_out(await admin_cli("review", "list", "--review-state", "staged", "--json")) == []


async def test_human_output_of_decisions(ipto, admin_cli, provider, tmp_path):
    _, ids = await _uploaded(ipto, tmp_path, "a.txt")
    r = await admin_cli("review", "list")
    assert r.exit_code == 0 and ids["a.txt"] in r.stdout
    r = await admin_cli("review", "approve", ids["a.txt"])
    assert r.exit_code == 0 and r.stdout.startswith(f"{ids['a.txt']}: approved (job job_")


async def test_one_bad_id_fails_the_command_but_not_the_others(ipto, admin_cli, provider, tmp_path):
    _, ids = await _uploaded(ipto, tmp_path, "a.txt")
    r = await admin_cli("review", "reject", "obj_missing", ids["a.txt"], "--json")
    assert r.exit_code == 1
    assert [d["object_id"] for d in json.loads(r.stdout)] == [ids["a.txt"]]
    line = one_error_line(r)
    assert line.startswith("obj_missing: ipto: ") and "not_found" in line and "request_id req_" in line


async def test_review_is_refused_to_providers(ipto, provider):
    r = await ipto("review", "list")
    assert r.exit_code == 1
    line = one_error_line(r)
    assert "forbidden" in line and "HTTP 403" in line and "request_id req_" in line


async def test_jobs_get_unknown_job(ipto, provider):
    r = await ipto("jobs", "get", "job_missing")
    assert r.exit_code == 1 and "not_found" in one_error_line(r)


async def test_queue_filters_order_and_preview(ipto, admin_cli, provider, tmp_path):
    _, ids = await _uploaded(ipto, tmp_path, "a.txt", "b.txt")
    (tmp_path / "evil.txt").write_text("Globex\x1b[2J\x1b]0;owned\x07 total\n")
    other = json_out(await ipto("datasets", "create", "Other", "--json"))["dataset_id"]
    evil = json_out(await ipto("upload", str(tmp_path / "evil.txt"), "--dataset", other, "--json"))["files"][0]["object_id"]

    oldest = json_out(await admin_cli("review", "list", "--oldest-first", "--json"))
    assert [o["object_id"] for o in oldest][-1] == evil and len(oldest) == 3
    newest = json_out(await admin_cli("review", "list", "--json"))  # by creation (a folder's files upload side by side)
    assert newest[0]["object_id"] == evil and {o["object_id"] for o in newest} == {o["object_id"] for o in oldest}
    assert [o["object_id"] for o in json_out(await admin_cli("review", "list", "--dataset-id", other, "--json"))] == [evil]
    assert json_out(await admin_cli("review", "list", "--modality", "image", "--json")) == []
    assert len(json_out(await admin_cli("review", "list", "--modality", "text", "--newer-than", "1h", "--json"))) == 3
    assert json_out(await admin_cli("review", "list", "--older-than", "1h", "--json")) == []
    r = await admin_cli("review", "list", "--older-than", "soon")
    assert r.exit_code == 2 and "not a duration" in r.stderr

    shown = json_out(await admin_cli("review", "preview", ids["a.txt"], "--json"))
    assert shown["kind"] == "text" and shown["text"].startswith("Invoice a.txt from Globex")
    human = await admin_cli("review", "preview", evil)
    assert human.exit_code == 0 and "Globex\\x1b[2J\\x1b]0;owned\\x07 total" in human.stdout and "\x1b" not in human.stdout
    staged = json_out(await admin_cli("review", "list", "--review-state", "staged", "--json"))
    assert len(staged) == 3  # previews claim nothing
