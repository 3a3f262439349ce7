"""Fixtures for CLI tests: a real service (admin bootstrapped, 6 MiB multipart threshold)
and ``ipto``, which runs the command line in-process (click's CliRunner) on a worker
thread so the service, on the test's trio loop, keeps answering."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
from click.testing import CliRunner, Result

from engine.cli import main
from tests.conftest import make_config, signup
from tests.http.uploads_helpers import MULTIPART

ADMIN_EMAIL, ADMIN_PASSWORD = "root@example.com", "admin password"
ADMIN = {"admin.bootstrap_email": ADMIN_EMAIL, "admin.bootstrap_password": ADMIN_PASSWORD}
PASSWORD = "correct horse battery"
# CliRunner swaps sys.stdout/sys.stderr/os.environ for the whole process, and pytest-trio
# sets fixtures up concurrently: one invocation at a time.
_ONE_AT_A_TIME = threading.Lock()


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN, **MULTIPART)


@pytest.fixture(name="server_log", autouse=True)
def _server_log(tmp_path):
    """The in-process server logs to a file: with structlog's defaults it would print to
    whatever sys.stdout is at the time, i.e. into CliRunner's captured output."""
    saved = structlog.get_config()
    with open(tmp_path / "server.log", "w") as fh:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=fh))
        yield tmp_path / "server.log"
        structlog.configure(**saved)


@dataclasses.dataclass
class Ipto:
    """``await ipto("datasets", "list", "--json")`` → click's Result (stdout, stderr, exit_code)."""

    env: dict[str, str | None]
    config_dir: Path
    state_dir: Path

    async def __call__(self, *args: str, input: str | None = None, env: dict[str, str | None] | None = None,
                       catch_exceptions: bool = False) -> Result:
        runner = CliRunner()

        def invoke() -> Result:
            with _ONE_AT_A_TIME:
                return runner.invoke(main, list(args), input=input, env={**self.env, **(env or {})},
                                     catch_exceptions=catch_exceptions)

        return await trio.to_thread.run_sync(invoke)

    def as_user(self, name: str, **env: str | None) -> Ipto:
        """The same server, another user's config dir (and extra environment)."""
        base = self.config_dir.parent / name
        return Ipto({**self.env, "IPTO_CONFIG_DIR": str(base / "config"), **env}, base / "config", self.state_dir)


@pytest.fixture(name="ipto")
def _ipto(service, tmp_path) -> Ipto:
    config_dir, state_dir = tmp_path / "home" / "config", tmp_path / "home" / "state"
    env = {"IPTO_URL": service.url, "IPTO_CONFIG_DIR": str(config_dir), "IPTO_STATE_DIR": str(state_dir),
           "IPTO_API_KEY": None, "IPTO_TOKEN": None}
    return Ipto(env, config_dir, state_dir)


@pytest.fixture(name="provider")
async def _provider(client, ipto):
    """A provider account, logged in through ``ipto login``."""
    account = await signup(client, password=PASSWORD)
    r = await ipto("login", "--email", account.email, "--password", PASSWORD)
    assert r.exit_code == 0, r.output
    return account


@pytest.fixture(name="admin_cli")
async def _admin_cli(ipto) -> Ipto:
    admin = ipto.as_user("admin")
    r = await admin("login", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
    assert r.exit_code == 0, r.output
    return admin


def json_out(result: Result) -> Any:
    import json

    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def one_error_line(result: Result) -> str:
    """The failure was told in exactly one line on stderr, without a traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]
