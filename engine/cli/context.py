"""Where the client commands find their server, credentials and state.

Server URL: ``--url``, else ``IPTO_URL``, else the URL of the last ``ipto login``, else
http://127.0.0.1:8080. Credentials: ``IPTO_API_KEY``, else ``IPTO_TOKEN``, else the session
token ``ipto login`` stored for that URL. Stored sessions live in ``credentials.json`` (0600,
directory 0700) in the user's config dir (``IPTO_CONFIG_DIR`` overrides); resumable-upload
state lives in the user's state dir (``IPTO_STATE_DIR`` overrides).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import trio

if TYPE_CHECKING:
    from engine.client import AsyncClient

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8080"
CREDENTIALS = "credentials.json"


class CliFailure(click.ClickException):
    """A failure reported as one line ``ipto: <message>``, exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"ipto: {self.message}", err=True)


class CliUsageFailure(CliFailure):
    """Like :class:`CliFailure` for a usage problem (missing credentials, bad file): exit 2."""

    exit_code = 2


def config_dir() -> Path:
    if os.environ.get("IPTO_CONFIG_DIR"):
        return Path(os.environ["IPTO_CONFIG_DIR"])
    import platformdirs

    return Path(platformdirs.user_config_dir("ipto"))


def state_dir() -> Path:
    if os.environ.get("IPTO_STATE_DIR"):
        return Path(os.environ["IPTO_STATE_DIR"])
    import platformdirs

    return Path(platformdirs.user_state_dir("ipto"))


def _norm(url: str) -> str:
    return url.rstrip("/")


def load_credentials() -> dict[str, Any]:
    try:
        data = json.loads((config_dir() / CREDENTIALS).read_text())
    except (FileNotFoundError, ValueError):
        return {"default_url": None, "sessions": {}}
    data.setdefault("sessions", {})
    return data


def save_credentials(data: dict[str, Any]) -> Path:
    """Write atomically, readable by the user only (the file holds session tokens)."""
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / CREDENTIALS
    tmp = directory / f".{CREDENTIALS}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.chmod(tmp, 0o600)  # in case umask or an old file made it wider
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None
    api_key: str | None
    retries: int
    debug: bool


def meta(ctx: click.Context) -> dict[str, Any]:
    return ctx.find_root().meta


def settings(ctx: click.Context) -> Settings:
    m = meta(ctx)
    creds = load_credentials()
    url = _norm(m.get("ipto.url") or os.environ.get("IPTO_URL") or creds.get("default_url") or DEFAULT_URL)
    session = creds["sessions"].get(url) or {}
    return Settings(
        url=url,
        token=os.environ.get("IPTO_TOKEN") or session.get("token"),
        api_key=os.environ.get("IPTO_API_KEY") or None,
        retries=int(m.get("ipto.retries") or 5),
        debug=bool(m.get("ipto.debug")),
    )


def make_client(s: Settings, *, need_auth: bool = True) -> AsyncClient:
    from engine.client import AsyncClient, RetryPolicy

    if need_auth and not (s.api_key or s.token):
        raise CliUsageFailure(f"not logged in to {s.url}: run `ipto login` or set IPTO_API_KEY")
    return AsyncClient(s.url, token=s.token, api_key=s.api_key, retry=RetryPolicy(attempts=max(1, s.retries)))


def run(ctx: click.Context, fn: Callable[[AsyncClient], Awaitable[T]], *, need_auth: bool = True) -> T:
    """Run ``fn(client)`` in a fresh trio loop with a client for the resolved server."""
    client = make_client(settings(ctx), need_auth=need_auth)

    async def main() -> T:
        async with client:
            return await fn(client)

    return trio.run(main)


# -- options every client command accepts (also before the command name) -------------------
def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value not in (None, False):
            meta(ctx)[key] = value

    return callback


def common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--url``, ``--retries`` and ``--debug`` (which shows tracebacks)."""
    fn = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_remember("ipto.debug"),
                      help="Show tracebacks of failures.")(fn)
    fn = click.option("--retries", type=click.IntRange(1, 20), expose_value=False, callback=_remember("ipto.retries"),
                      help="Tries per request on 429/5xx/connection errors (default 5).")(fn)
    fn = click.option("--url", metavar="URL", expose_value=False, callback=_remember("ipto.url"),
                      help="Server URL (default: $IPTO_URL, the last login's, or http://127.0.0.1:8080).")(fn)
    return fn


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(fn)


def list_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--limit N`` (default 50) or ``--all``: lists follow the server's cursors for you."""
    fn = click.option("--all", "all_", is_flag=True, help="Every item (follows every page).")(fn)
    fn = click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="At most this many items.")(fn)
    return fn


async def take(items: Any, limit: int | None) -> list[Any]:
    """Up to ``limit`` items of an async iterator (all when ``limit`` is None)."""
    out: list[Any] = []
    async with contextlib.aclosing(items):
        async for item in items:
            out.append(item)
            if limit is not None and len(out) >= limit:
                break
    return out
