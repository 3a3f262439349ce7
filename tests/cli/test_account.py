"""``ipto login|logout|whoami`` and where credentials come from."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import trio

from tests.cli.conftest import PASSWORD, json_out, one_error_line
from tests.conftest import create_key, signup


async def test_login_keeps_the_token_for_that_server_in_a_0600_file(client, ipto, service):
    account = await signup(client, password=PASSWORD)
    r = await ipto("login", "--email", account.email, "--password", PASSWORD, "--json")
    body = json_out(r)
    assert body["user"]["email"] == account.email and body["url"] == service.url
    creds = ipto.config_dir / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert stat.S_IMODE(ipto.config_dir.stat().st_mode) == 0o700
    stored = json.loads(creds.read_text())
    assert stored["default_url"] == service.url
    token = stored["sessions"][service.url]["token"]
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    # later commands use it, and the URL of the login when IPTO_URL is not set
    whoami = json_out(await ipto("whoami", "--json", env={"IPTO_URL": None}))
    assert whoami["user"]["email"] == account.email and "datasets:write" in whoami["scopes"]


async def test_login_prompts_for_the_password_without_echoing_it(client, ipto):
    account = await signup(client, password=PASSWORD)
    r = await ipto("login", "--email", account.email, input=f"{PASSWORD}\n")
    assert r.exit_code == 0, r.output
    assert PASSWORD not in r.output
    assert f"logged in to {ipto.env['IPTO_URL']} as {account.email}" in r.stdout


async def test_login_reads_a_piped_password_without_a_getpass_warning(client, ipto, tmp_path):
    """A real process with a pipe on stdin (no CliRunner): ``echo "$PW" | ipto login --email …``."""
    account = await signup(client, password=PASSWORD)
    env = {**os.environ, "IPTO_URL": ipto.env["IPTO_URL"], "IPTO_CONFIG_DIR": str(tmp_path / "cfg"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    async def ipto_process(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
        return await trio.run_process([sys.executable, "-m", "engine", *args], stdin=stdin, capture_stdout=True,
                                      capture_stderr=True, check=False, env=env)

    done = await ipto_process("login", "--email", account.email, "--json", stdin=f"{PASSWORD}\n".encode())
    assert done.returncode == 0, done.stderr
    assert b"Warning" not in done.stderr and PASSWORD.encode() not in done.stdout + done.stderr
    assert json.loads(done.stdout)["user"]["email"] == account.email  # stdout holds the JSON and nothing else
    both = await ipto_process("login", stdin=f"{account.email}\n{PASSWORD}\n".encode())
    assert both.returncode == 0 and b"Warning" not in both.stderr and b"logged in" in both.stdout
    empty = await ipto_process("login", "--email", account.email, stdin=b"")
    assert empty.returncode == 2 and b"no password" in empty.stderr


async def test_wrong_password_is_one_line_with_the_request_id(client, ipto):
    account = await signup(client, password=PASSWORD)
    r = await ipto("login", "--email", account.email, "--password", "not it")
    assert r.exit_code == 1
    line = one_error_line(r)
    assert line.startswith("ipto: ") and "unauthenticated" in line and "HTTP 401" in line and "request_id req_" in line
    assert not (ipto.config_dir / "credentials.json").exists()


async def test_api_key_from_the_environment_needs_no_login(client, ipto, alice):
    key = (await create_key(client, alice.headers, ["datasets:read", "datasets:write"]))["key"]
    created = json_out(await ipto("datasets", "create", "Keyed", "--json", env={"IPTO_API_KEY": key}))
    listed = json_out(await ipto("datasets", "list", "--json", env={"IPTO_API_KEY": key}))
    assert [d["dataset_id"] for d in listed] == [created["dataset_id"]]
    assert created["tenant_id"] == alice.tenant_id


async def test_no_credentials_is_a_usage_error(ipto):
    r = await ipto("datasets", "list")
    assert r.exit_code == 2
    assert "not logged in" in one_error_line(r) and "ipto login" in r.stderr


async def test_logout_ends_the_session_on_the_server_and_forgets_it(client, ipto, provider, service):
    token = json.loads((ipto.config_dir / "credentials.json").read_text())["sessions"][service.url]["token"]
    r = await ipto("logout")
    assert r.exit_code == 0, r.output
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})).status_code == 401
    assert service.url not in json.loads((ipto.config_dir / "credentials.json").read_text())["sessions"]
    assert (await ipto("whoami")).exit_code == 2


async def test_unreachable_server_is_one_line_and_exit_1(ipto):
    r = await ipto("--retries", "1", "whoami", env={"IPTO_URL": "http://127.0.0.1:9", "IPTO_TOKEN": "t"})
    assert r.exit_code == 1
    assert "cannot reach http://127.0.0.1:9" in one_error_line(r)
