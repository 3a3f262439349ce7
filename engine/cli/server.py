"""``ipto serve`` and the operator commands that act on the store directly (``ipto admin``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import trio

from engine.config import Config, ConfigError, load_config
from engine.errors import EngineError


def _leaf(group: BaseExceptionGroup) -> BaseException:
    """The first real exception inside (possibly nested) exception groups."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _config(config_path: Path | None, overrides: dict[str, Any]) -> Config:
    try:
        return load_config(config_path, overrides=overrides)
    except ConfigError as exc:
        click.echo(f"ipto: {exc}", err=True)
        sys.exit(2)


@click.command()
@click.option("--host", help="Interface to listen on (http.host).")
@click.option("--port", type=int, help="TCP port (http.port); 0 picks a free one.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where the embedded store and blobs live.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="A TOML file replacing config/engine.toml.")
@click.option("--workers", type=int, help="Engine processes serving the socket (http.workers); 0: one per CPU core available.")
def serve(host: str | None, port: int | None, data_dir: Path | None, config_path: Path | None, workers: int | None) -> None:
    """Run the service until SIGINT or SIGTERM."""
    from engine.logging import configure_logging
    from engine.memory import limit_malloc_arenas
    from engine.service import serve_until_signalled

    limit_malloc_arenas()  # before any thread starts: engine/memory.py
    cfg = _config(config_path, {"http.host": host, "http.port": port, "data_dir": data_dir, "http.workers": workers})
    configure_logging(cfg.log)
    code = 0
    try:
        trio.run(serve_until_signalled, cfg)
    except* ConfigError as group:
        click.echo(f"ipto: {_leaf(group)}", err=True)
        code = 2
    except* OSError as group:
        click.echo(f"ipto: cannot start: {_leaf(group)}", err=True)
        code = 1
    sys.exit(code)


@click.group()
def admin() -> None:
    """Operator commands that act on the store directly."""


@admin.command("create-user")
@click.option("--email", required=True)
@click.option("--password", required=True, prompt=True, hide_input=True, confirmation_prompt=False)
@click.option("--name", default=None)
@click.option("--platform-admin", is_flag=True, help="Grant the admin:* scope (review queue).")
@click.option("--data-dir", type=click.Path(path_type=Path))
@click.option("--config", "config_path", type=click.Path(path_type=Path))
def create_user(
    email: str, password: str, name: str | None, platform_admin: bool, data_dir: Path | None, config_path: Path | None
) -> None:
    """Create a user with its own tenant (or promote an existing one with --platform-admin)."""
    from engine.identity import Identity
    from engine.store import open_store

    cfg = _config(config_path, {"data_dir": data_dir})

    async def run() -> str:
        import trio_asyncio

        from engine.datadir import secure_data_dir

        secure_data_dir(cfg.data_dir)  # it may be the first to create the database: private from the start
        async with trio_asyncio.open_loop(), open_store(cfg) as store:
            identity = Identity(store, cfg.auth)
            if platform_admin:
                user = await identity.ensure_platform_admin(email, password)
            else:
                user, _ = await identity.create_account(email, password, name)
            return user.id

    try:
        user_id = trio.run(run)
    except (EngineError, ConfigError) as exc:
        click.echo(f"ipto: {getattr(exc, 'message', exc)}", err=True)
        sys.exit(1)
    click.echo(f"created {user_id}" + (" (platform admin)" if platform_admin else ""))
