"""``ipto upload``: folders, multipart in parallel, checksums, resuming an interrupted
upload, summary and exit codes; then ``ipto objects …`` on what was uploaded.

Which parts were accepted is seen where the bytes go: on local blobs, in the engine's part
receiver (:class:`PartSpy`); on S3, which the engine never sees a PUT of, in the client's
HTTP transport, where S3's answer arrives (:class:`S3PartSpy`; in a child process, the
wrapper :data:`S3_CLI`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from engine.errors import ServiceUnavailable
from tests.cli.conftest import json_out, one_error_line
from tests.conftest import S3
from tests.http.uploads_helpers import MiB, sha

REPO = Path(__file__).resolve().parents[2]  # `python -m engine` runs this checkout
BIG = 12 * MiB  # over the 6 MiB threshold: 3 parts of 5, 5 and 2 MiB


def _write(path: Path, data: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _folder(root: Path) -> dict[str, bytes]:
    return {
        "notes.txt": _write(root / "notes.txt", b"Invoice 0425 from Globex.\n"),
        "sub/readme.md": _write(root / "sub" / "readme.md", b"# Readme\n\nmore text\n"),
        "big.txt": _write(root / "big.txt", os.urandom(BIG // 2).hex().encode()),
    }


async def _dataset(ipto, name="Uploads") -> str:
    return json_out(await ipto("datasets", "create", name, "--json"))["dataset_id"]


class PartSpy:
    """Wraps the server's part receiver: records the parts it accepts; refuses (503) or
    holds back the parts named."""

    def __init__(self, monkeypatch, service, refuse: set[int] = frozenset(), hold: set[int] = frozenset()) -> None:
        self.accepted: list[int] = []
        self.release = trio.Event()
        self.in_flight = 0
        self._original = service.services.objects.receive_part
        self._refuse, self._hold = refuse, hold
        monkeypatch.setattr(service.services.objects, "receive_part", self._receive_part)

    async def _receive_part(self, upload_id, part_number, declared_length, content_length, body):
        if part_number in self._refuse:
            raise ServiceUnavailable("part store briefly unavailable (test)")
        self.in_flight += 1
        try:
            if part_number in self._hold:
                await self.release.wait()
            part = await self._original(upload_id, part_number, declared_length, content_length, body)
        finally:
            self.in_flight -= 1
        self.accepted.append(part_number)
        return part

    async def settle(self) -> None:
        with trio.fail_after(30):
            while self.in_flight:
                await trio.sleep(0.01)


def _part_number(url: httpx.URL) -> int:
    return int(url.params.get("partNumber", 1))  # a single-part upload is part 1


class S3PartSpy:
    """On S3: wraps the HTTP transport of the in-process CLI's client. Records the parts S3
    accepted (200); answers the parts named in ``refuse`` as an overloaded S3 does (503
    SlowDown), without sending them."""

    SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                 b"<Message>Please reduce your request rate. (test)</Message></Error>")

    def __init__(self, monkeypatch, endpoint: str, refuse: set[int] = frozenset()) -> None:
        self.accepted: list[int] = []
        real = httpx.AsyncHTTPTransport.handle_async_request

        async def handle(transport: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
            if request.method != "PUT" or not str(request.url).startswith(endpoint):
                return await real(transport, request)
            part = _part_number(request.url)
            if part in refuse:
                return httpx.Response(503, content=self.SLOW_DOWN, headers={"Content-Type": "application/xml"}, request=request)
            response = await real(transport, request)
            if response.status_code == 200:
                self.accepted.append(part)
            return response

        monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", handle)


def part_spy(monkeypatch, service, cfg, refuse: set[int] = frozenset()) -> PartSpy | S3PartSpy:
    """The parts accepted, where this backend accepts them."""
    if S3:
        return S3PartSpy(monkeypatch, cfg.blobs.s3_endpoint, refuse)
    return PartSpy(monkeypatch, service, refuse=refuse)


async def s3_parts(service, upload_id: str) -> dict[int, str]:
    """S3: the parts (number → ETag, unquoted) S3 holds for an unfinished multipart upload."""
    upload = await service.services.store.get_upload(upload_id)
    obj = await service.services.store.get_object(upload.tenant_id, upload.object_id)
    held = await service.services.objects.blobs.received_parts(upload, obj.blob_id, [])
    return {p.part_number: p.etag.strip('"') for p in held or []}


# ``python -c S3_CLI HOLD LOG upload …``: ``ipto`` (S3 blobs) in a child process, its part
# PUTs seen where S3 answers them. Parts named in HOLD ("2,3") send their first MiB to S3,
# then stall until the process is killed; each part S3 accepts is appended to the file LOG.
S3_CLI = """
import sys

import httpx
import trio

from engine.cli import main

held = {int(n) for n in sys.argv[1].split(",") if n}
log = sys.argv[2]
del sys.argv[1:3]
real = httpx.AsyncHTTPTransport.handle_async_request


class Stalling(httpx.AsyncByteStream):
    def __init__(self, inner):
        self.inner = inner

    async def __aiter__(self):
        async for chunk in self.inner:
            yield chunk
            await trio.sleep_forever()


async def handle(self, request):
    part = int(request.url.params.get("partNumber", 0))
    if request.method == "PUT" and part in held:
        request.stream = Stalling(request.stream)
    response = await real(self, request)
    if request.method == "PUT" and part and response.status_code == 200:
        with open(log, "a") as fh:
            fh.write(f"{part}\\n")
    return response


httpx.AsyncHTTPTransport.handle_async_request = handle
main(prog_name="ipto")
"""


async def test_upload_a_folder_with_a_multipart_file(ipto, provider, client, tmp_path, monkeypatch, service, cfg):
    files = _folder(tmp_path / "batch")
    _write(tmp_path / "batch" / ".DS_Store", b"junk")
    dsid = await _dataset(ipto)
    spy = part_spy(monkeypatch, service, cfg)

    out = json_out(await ipto("upload", str(tmp_path / "batch"), "--dataset", dsid, "--json"))
    assert out["uploaded"] == 3 and out["failed"] == 0 and out["dataset_id"] == dsid
    by_name = {Path(f["path"]).relative_to(tmp_path / "batch").as_posix(): f for f in out["files"]}
    assert set(by_name) == set(files)  # the dotfile stayed home
    big = by_name["big.txt"]
    assert big["strategy"] == "multipart" and big["parts_total"] == 3 and big["parts_sent"] == 3 and not big["resumed"]
    assert by_name["notes.txt"]["strategy"] == "single_part"
    assert by_name["sub/readme.md"]["content_type"] == "text/markdown"
    assert sorted(spy.accepted) == [1, 1, 1, 2, 3]

    for name, data in files.items():
        f = by_name[name]
        assert f["status"] == "uploaded" and f["checksum_sha256"] == sha(data) and f["error"] is None
        obj = (await client.get(f"/v1/objects/{f['object_id']}", headers=provider.headers)).json()["data"]
        assert obj["status"] == "uploaded" and obj["review_state"] == "staged"
        assert obj["checksum_sha256"] == sha(data) and obj["size_bytes"] == len(data)
        assert obj["original_filename"] == Path(name).name
    ds = (await client.get(f"/v1/datasets/{dsid}", headers=provider.headers)).json()["data"]
    assert ds["object_count"] == 3
    assert not list((ipto.state_dir / "uploads").glob("*.json"))  # nothing left to resume


async def test_progress_bars_and_summary_table(ipto, provider, tmp_path):
    files = _folder(tmp_path / "batch")
    dsid = await _dataset(ipto)
    r = await ipto("upload", str(tmp_path / "batch"), "--dataset", dsid, "--progress")
    assert r.exit_code == 0, r.output
    assert "upload summary" in r.stdout and "3 uploaded, 0 skipped, 0 failed" in r.stdout and "3/3" in r.stdout
    for name in files:
        assert Path(name).name in r.stderr  # a line per finished file under the bars


async def test_a_failing_part_fails_the_run_and_a_rerun_sends_only_that_part(ipto, provider, client, tmp_path, monkeypatch, service, cfg):
    """Part 2 is refused as unavailable (503) on every try: by the engine's part receiver
    (local) or by S3 (SlowDown). The parts accepted are kept for the re-run."""
    data = _write(tmp_path / "big.txt", os.urandom(BIG // 2).hex().encode())
    dsid = await _dataset(ipto)
    spy = part_spy(monkeypatch, service, cfg, refuse={2})

    first = await ipto("--retries", "2", "upload", str(tmp_path / "big.txt"), "--dataset", dsid, "--json")
    assert first.exit_code == 1
    report = json.loads(first.stdout)
    assert report["failed"] == 1 and report["uploaded"] == 0
    failed = report["files"][0]
    if S3:  # S3's XML error, told as the client reads a non-envelope answer
        assert failed["status"] == "failed" and failed["error"]["code"] == "http_503" and failed["error"]["status"] == 503
        assert "SlowDown" in failed["error"]["message"] and "test" in failed["error"]["message"]
    else:
        assert failed["status"] == "failed" and failed["error"]["code"] == "unavailable"
        assert failed["error"]["request_id"].startswith("req_") and "test" in failed["error"]["message"]
    assert sorted(spy.accepted) == [1, 3]
    state = [json.loads(p.read_text()) for p in (ipto.state_dir / "uploads").glob("*.json")]
    assert len(state) == 1 and sorted(state[0]["parts"]) == ["1", "3"] and state[0]["sha256"] == sha(data)
    if S3:  # what the state remembers is what S3 holds
        assert await s3_parts(service, failed["upload_id"]) == {int(n): etag for n, etag in state[0]["parts"].items()}

    monkeypatch.undo()  # the server is well again
    spy = part_spy(monkeypatch, service, cfg)
    second = json_out(await ipto("upload", str(tmp_path / "big.txt"), "--dataset", dsid, "--json"))
    assert spy.accepted == [2]  # only the missing part
    done = second["files"][0]
    assert done["resumed"] and done["parts_sent"] == 1 and done["parts_total"] == 3
    assert done["object_id"] == failed["object_id"] and done["status"] == "uploaded"
    obj = (await client.get(f"/v1/objects/{done['object_id']}", headers=provider.headers)).json()["data"]
    assert obj["status"] == "uploaded" and obj["checksum_sha256"] == sha(data)
    objects = (await client.get(f"/v1/datasets/{dsid}/objects", headers=provider.headers)).json()["data"]["objects"]
    assert len(objects) == 1  # the re-run re-initiated the same object, not a second one
    assert not list((ipto.state_dir / "uploads").glob("*.json"))


async def test_a_killed_upload_resumes_from_the_parts_already_accepted(ipto, provider, client, tmp_path, monkeypatch, service):
    """The CLI (a child process) is killed with part 1 accepted and parts 2 and 3 under way:
    held by the engine's part receiver (local) or stalled after their first MiB on their way
    to S3. A re-run sends only parts 2 and 3."""
    data = _write(tmp_path / "big.txt", os.urandom(BIG // 2).hex().encode())
    dsid = await _dataset(ipto)
    env = dict(os.environ)
    for key, value in ipto.env.items():
        if value is None:
            env.pop(key, None)  # e.g. no IPTO_API_KEY of the caller's
        else:
            env[key] = value
    args = ["upload", str(tmp_path / "big.txt"), "--dataset", dsid, "--json"]
    if S3:
        log = tmp_path / "accepted.log"
        cmd = [sys.executable, "-c", S3_CLI, "", str(log), *args]
        proc = await trio.lowlevel.open_process([sys.executable, "-c", S3_CLI, "2,3", str(log), *args], env=env, cwd=REPO,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        states = await _kill_once_part_1_is_remembered(ipto, proc)
        assert sorted(states[0]["parts"]) == ["1"] and log.read_text().split() == ["1"]
        # S3 holds part 1 only: the interrupted PUTs of parts 2 and 3 left nothing
        assert await s3_parts(service, states[0]["upload_id"]) == {1: states[0]["parts"]["1"]}
        log.unlink()
        rerun = await trio.run_process(cmd, env=env, cwd=REPO, capture_stdout=True, capture_stderr=True, check=False)
        assert rerun.returncode == 0, rerun.stderr.decode()
        assert sorted(log.read_text().split()) == ["2", "3"]  # part 1 was not sent again
    else:
        spy = PartSpy(monkeypatch, service, hold={2, 3})
        cmd = [sys.executable, "-m", "engine", *args]
        proc = await trio.lowlevel.open_process(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            states = await _kill_once_part_1_is_remembered(ipto, proc)
        finally:
            spy.release.set()  # the held parts now meet a closed connection
        assert sorted(states[0]["parts"]) == ["1"] and spy.accepted == [1]
        await spy.settle()

        spy.accepted.clear()
        rerun = await trio.run_process(cmd, env=env, cwd=REPO, capture_stdout=True, capture_stderr=True, check=False)
        assert rerun.returncode == 0, rerun.stderr.decode()
        assert sorted(spy.accepted) == [2, 3]  # part 1 was not sent again
    done = json.loads(rerun.stdout)["files"][0]
    assert done["resumed"] and done["parts_sent"] == 2 and done["status"] == "uploaded"
    obj = (await client.get(f"/v1/objects/{done['object_id']}", headers=provider.headers)).json()["data"]
    assert obj["status"] == "uploaded" and obj["checksum_sha256"] == sha(data) and obj["size_bytes"] == len(data)


async def _kill_once_part_1_is_remembered(ipto, proc) -> list[dict]:
    """SIGKILL the CLI once its state file holds an accepted part; that state."""
    try:
        with trio.fail_after(60):  # wait until part 1 is accepted and remembered
            while True:
                states = [json.loads(p.read_text()) for p in (ipto.state_dir / "uploads").glob("*.json")]
                if states and states[0]["parts"]:
                    break
                assert proc.poll() is None, "the CLI ended before it was killed"
                await trio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return states


async def test_upload_failures_exit_1_with_the_request_id(ipto, provider, tmp_path):
    _write(tmp_path / "a.txt", b"hello")
    r = await ipto("upload", str(tmp_path / "a.txt"), "--dataset", "dset_missing")
    assert r.exit_code == 1
    assert "0 uploaded, 0 skipped, 1 failed" in r.stdout and "dataset not found" in r.stdout and "request_id req_" in r.stdout
    assert "Traceback" not in r.output


async def test_a_type_the_dataset_refuses_fails_that_file_only(ipto, provider, tmp_path):
    _write(tmp_path / "d" / "ok.txt", b"text")
    _write(tmp_path / "d" / "tune.mp3", b"ID3 not really")
    dsid = await _dataset(ipto)
    r = await ipto("upload", str(tmp_path / "d"), "--dataset", dsid, "--json")
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    assert report["uploaded"] == 1 and report["failed"] == 1
    bad = next(f for f in report["files"] if f["path"].endswith("tune.mp3"))
    assert bad["content_type"] == "audio/mpeg" and bad["error"]["code"] == "invalid_request"


async def test_a_second_run_uploads_nothing_twice(ipto, provider, client, tmp_path):
    files = _folder(tmp_path / "batch")
    dsid = await _dataset(ipto)
    first = json_out(await ipto("upload", str(tmp_path / "batch"), "--dataset", dsid, "--json"))
    ids = {Path(f["path"]).name: f["object_id"] for f in first["files"]}

    r = await ipto("upload", str(tmp_path / "batch"), "--dataset", dsid)
    assert r.exit_code == 0, r.output
    assert "0 uploaded, 3 skipped, 0 failed" in r.stdout and "already in the dataset" in r.stdout
    again = json_out(await ipto("upload", str(tmp_path / "batch"), "--dataset", dsid, "--json"))
    assert (again["uploaded"], again["skipped"], again["failed"]) == (0, 3, 0)
    assert all(f["status"] == "skipped" and f["parts_sent"] == 0 and f["error"] is None for f in again["files"])
    assert {Path(f["path"]).name: f["object_id"] for f in again["files"]} == ids  # it names the object already there
    assert {Path(f["path"]).name: f["checksum_sha256"] for f in again["files"]} == {Path(n).name: sha(d) for n, d in files.items()}

    # same name, other bytes, and same bytes under another name: both are new files
    _write(tmp_path / "batch" / "notes.txt", b"Invoice 0426 from Globex.\n")
    _write(tmp_path / "batch" / "copy-of-readme.md", files["sub/readme.md"])
    changed = json_out(await ipto("upload", str(tmp_path / "batch"), "--dataset", dsid, "--json"))
    uploaded = sorted(Path(f["path"]).name for f in changed["files"] if f["status"] == "uploaded")
    assert uploaded == ["copy-of-readme.md", "notes.txt"] and changed["skipped"] == 2

    forced = json_out(await ipto("upload", str(tmp_path / "batch" / "big.txt"), "--dataset", dsid, "--force", "--json"))
    assert (forced["uploaded"], forced["skipped"]) == (1, 0) and forced["files"][0]["object_id"] != ids["big.txt"]
    ds = (await client.get(f"/v1/datasets/{dsid}", headers=provider.headers)).json()["data"]
    assert ds["object_count"] == 3 + 2 + 1


async def test_a_deleted_or_rejected_object_does_not_count_as_already_there(ipto, provider, client, tmp_path):
    _write(tmp_path / "a.txt", b"first version\n")
    dsid = await _dataset(ipto)
    first = json_out(await ipto("upload", str(tmp_path / "a.txt"), "--dataset", dsid, "--json"))
    await client.delete(f"/v1/objects/{first['files'][0]['object_id']}", headers=provider.headers)
    again = json_out(await ipto("upload", str(tmp_path / "a.txt"), "--dataset", dsid, "--json"))
    assert (again["uploaded"], again["skipped"]) == (1, 0)


async def test_a_refused_file_leaves_no_resume_state(ipto, provider, tmp_path):
    _write(tmp_path / "tune.mp3", b"ID3 not really")
    dsid = await _dataset(ipto)
    r = await ipto("upload", str(tmp_path / "tune.mp3"), "--dataset", dsid, "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["files"][0]["error"]["code"] == "invalid_request"
    assert not list((ipto.state_dir / "uploads").glob("*.json"))
    paused = await _dataset(ipto, "Paused")
    await ipto("datasets", "update", paused, "--status", "paused")
    _write(tmp_path / "a.txt", b"text")
    r = await ipto("upload", str(tmp_path / "a.txt"), "--dataset", paused, "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["files"][0]["error"]["status"] == 409
    assert not list((ipto.state_dir / "uploads").glob("*.json"))


async def test_missing_path_is_a_usage_error(ipto, provider, tmp_path):
    r = await ipto("upload", str(tmp_path / "nope"), "--dataset", "dset_x")
    assert r.exit_code == 2


async def test_objects_list_get_download_delete(ipto, provider, tmp_path):
    files = _folder(tmp_path / "batch")
    dsid = await _dataset(ipto)
    uploaded = json_out(await ipto("upload", str(tmp_path / "batch"), "--dataset", dsid, "--json"))["files"]
    big = next(f for f in uploaded if f["path"].endswith("big.txt"))

    listed = json_out(await ipto("objects", "list", "--dataset", dsid, "--json"))
    assert sorted(o["object_id"] for o in listed) == sorted(f["object_id"] for f in uploaded)
    assert len(json_out(await ipto("objects", "list", "--dataset", dsid, "--limit", "2", "--json"))) == 2
    obj = json_out(await ipto("objects", "get", big["object_id"], "--json"))
    assert obj["checksum_sha256"] == sha(files["big.txt"])

    (tmp_path / "out").mkdir()
    got = json_out(await ipto("objects", "download", big["object_id"], "-o", str(tmp_path / "out"), "--json"))
    assert Path(got["path"]) == tmp_path / "out" / "big.txt"
    assert (tmp_path / "out" / "big.txt").read_bytes() == files["big.txt"]

    deleted = json_out(await ipto("objects", "delete", big["object_id"], "--yes", "--json"))
    assert deleted["status"] == "deleted"
    r = await ipto("objects", "download", big["object_id"], "-o", str(tmp_path / "again.txt"))
    assert r.exit_code == 1 and "conflict" in one_error_line(r)
    assert not (tmp_path / "again.txt").exists()


# -- folders go through the batch routes ----------------------------------------------------------

class _AskCount:
    """The messages the engine's actors are asked, by type (batch routes: one per dataset)."""

    def __init__(self, monkeypatch, service) -> None:
        self.names: list[str] = []
        actors = service.services.actors
        original = actors.ask

        async def ask(dataset_id, message, timeout=None):
            self.names.append(type(message).__name__)
            return await original(dataset_id, message, timeout)

        monkeypatch.setattr(actors, "ask", ask)


async def test_a_folder_is_initiated_and_confirmed_in_one_batch(ipto, provider, client, tmp_path, monkeypatch, service):
    for i in range(12):
        _write(tmp_path / "many" / f"receipt-{i:02d}.txt", f"receipt {i}\n".encode() * (i + 1))
    dsid = await _dataset(ipto)
    asked = _AskCount(monkeypatch, service)
    out = json_out(await ipto("upload", str(tmp_path / "many"), "--dataset", dsid, "--json"))
    assert (out["uploaded"], out["failed"]) == (12, 0)
    assert asked.names.count("CreateObjects") == 1 and asked.names.count("FinishUploads") == 1
    assert "CreateObject" not in asked.names and "FinishUpload" not in asked.names  # no single initiate or confirm
    ds = (await client.get(f"/v1/datasets/{dsid}", headers=provider.headers)).json()["data"]
    assert ds["object_count"] == 12
    assert not list((ipto.state_dir / "uploads").glob("*.json"))
    assert not list((ipto.state_dir / "uploads").glob("batches/*.json"))  # the batch record is gone too


async def test_a_folder_rerun_after_a_failed_part_sends_only_that_part(ipto, provider, client, tmp_path, monkeypatch, service, cfg):
    """A folder (one multipart file, two small ones) initiated in one batch; part 2 of the
    big file is refused. The re-run replays the remembered batch (same objects) and sends
    only part 2; the small files were confirmed the first time."""
    files = _folder(tmp_path / "f")
    dsid = await _dataset(ipto)
    spy = part_spy(monkeypatch, service, cfg, refuse={2})
    first = await ipto("--retries", "2", "upload", str(tmp_path / "f"), "--dataset", dsid, "--json")
    assert first.exit_code == 1
    report = json.loads(first.stdout)
    assert (report["uploaded"], report["failed"]) == (2, 1)
    big = next(f for f in report["files"] if f["path"].endswith("big.txt"))
    assert big["status"] == "failed" and sorted(spy.accepted) == [1, 1, 1, 3]
    states = [json.loads(p.read_text()) for p in (ipto.state_dir / "uploads").glob("*.json")]
    assert len(states) == 1 and sorted(states[0]["parts"]) == ["1", "3"] and states[0]["batch_index"] is not None
    assert len(list((ipto.state_dir / "uploads").glob("batches/*.json"))) == 1

    monkeypatch.undo()
    spy = part_spy(monkeypatch, service, cfg)
    second = json_out(await ipto("upload", str(tmp_path / "f"), "--dataset", dsid, "--json"))
    assert spy.accepted == [2]  # only the missing part; the small files are skipped as already there
    assert (second["uploaded"], second["skipped"], second["failed"]) == (1, 2, 0)
    done = next(f for f in second["files"] if f["path"].endswith("big.txt"))
    assert done["resumed"] and done["parts_sent"] == 1 and done["object_id"] == big["object_id"]
    obj = (await client.get(f"/v1/objects/{done['object_id']}", headers=provider.headers)).json()["data"]
    assert obj["status"] == "uploaded" and obj["checksum_sha256"] == sha(files["big.txt"])
    objects = (await client.get(f"/v1/datasets/{dsid}/objects", headers=provider.headers)).json()["data"]["objects"]
    assert len(objects) == 3
    assert not list((ipto.state_dir / "uploads").glob("*.json"))
    assert not list((ipto.state_dir / "uploads").glob("batches/*.json"))


async def test_a_folder_with_refused_and_failing_files_fails_only_those(ipto, provider, client, tmp_path):
    _write(tmp_path / "d" / "a.txt", b"fine")
    _write(tmp_path / "d" / "b.txt", b"also fine")
    _write(tmp_path / "d" / "tune.mp3", b"ID3 not really")
    _write(tmp_path / "d" / "empty.txt", b"")
    dsid = await _dataset(ipto)
    r = await ipto("upload", str(tmp_path / "d"), "--dataset", dsid, "--json")
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    assert (report["uploaded"], report["failed"]) == (2, 2)
    by_name = {Path(f["path"]).name: f for f in report["files"]}
    assert by_name["tune.mp3"]["error"]["code"] == "invalid_request" and by_name["tune.mp3"]["error"]["status"] == 400
    assert "empty" in by_name["empty.txt"]["error"]["message"]
    assert not list((ipto.state_dir / "uploads").glob("*.json"))  # the refused file left nothing to resume

    paused = await _dataset(ipto, "Paused")
    await ipto("datasets", "update", paused, "--status", "paused")
    r = await ipto("upload", str(tmp_path / "d" / "a.txt"), str(tmp_path / "d" / "b.txt"), "--dataset", paused, "--json")
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    assert report["failed"] == 2 and {f["error"]["status"] for f in report["files"]} == {409}
    assert not list((ipto.state_dir / "uploads").glob("*.json"))
    assert not list((ipto.state_dir / "uploads").glob("batches/*.json"))
