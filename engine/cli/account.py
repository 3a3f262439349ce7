"""``ipto login``, ``logout``, ``signup``, ``whoami``: sessions kept in the user's config dir."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from engine.cli.context import common_options, json_option, load_credentials, run, save_credentials, settings
from engine.cli.output import emit, print_record

if TYPE_CHECKING:
    from engine.client import AsyncClient


def ask(what: str, *, secret: bool = False, confirm: bool = False) -> str:
    """A value not given as an option: prompted on a terminal (hidden if ``secret``), else
    read as one line of standard input, with no prompt and no echo control to attempt
    (``getpass`` would warn that it cannot hide a pipe), so ``echo "$PW" | ipto login`` works.
    Prompts go to stderr: stdout stays for the command's output (``--json``)."""
    if sys.stdin.isatty():
        return str(click.prompt(what, hide_input=secret, confirmation_prompt=confirm, err=True))
    line = sys.stdin.readline()
    if not line:
        raise click.UsageError(f"no {what.lower()}: give --{what.lower()}, or one line on standard input")
    return line.rstrip("\r\n")


def _remember_session(url: str, grant: dict[str, Any]) -> str:
    creds = load_credentials()
    creds["default_url"] = url
    creds["sessions"][url] = {"token": grant["token"], "expires_at": grant["expires_at"], "email": grant["user"]["email"]}
    return str(save_credentials(creds))


def _grant_view(url: str, grant: dict[str, Any], stored: str) -> dict[str, Any]:
    return {"url": url, "user": grant["user"], "tenant": grant["tenant"], "expires_at": grant["expires_at"], "credentials_file": stored}


@click.command()
@click.option("--email", help="Account email (asked when missing).")
@click.option("--password", help="Password (asked, hidden, when missing; read from standard input when it is not a terminal).")
@common_options
@json_option
@click.pass_context
def login(ctx: click.Context, email: str | None, password: str | None, as_json: bool) -> None:
    """Log in and keep the session token (file readable by you only) for this server."""
    s = settings(ctx)
    email = email or ask("Email")
    password = password or ask("Password", secret=True)

    async def go(api: AsyncClient) -> Any:
        return await api.login(email, password)

    grant = run(ctx, go, need_auth=False)
    view = _grant_view(s.url, grant, _remember_session(s.url, grant))
    emit(as_json, view, lambda: click.echo(f"logged in to {s.url} as {grant['user']['email']} (tenant {grant['tenant']['tenant_id']})"))


@click.command()
@click.option("--email", help="Account email (asked when missing).")
@click.option("--password", help="Password (asked twice, hidden, when missing; one line of standard input when it is not a terminal).")
@click.option("--name", default=None, help="Your name.")
@click.option("--tenant-name", default=None, help="Name of the organisation (tenant) created with the account.")
@common_options
@json_option
@click.pass_context
def signup(ctx: click.Context, email: str | None, password: str | None, name: str | None, tenant_name: str | None,
           as_json: bool) -> None:
    """Create an account (and its tenant) and log in to it."""
    s = settings(ctx)
    email = email or ask("Email")
    password = password or ask("Password", secret=True, confirm=True)

    async def go(api: AsyncClient) -> Any:
        return await api.signup(email, password, name, tenant_name)

    grant = run(ctx, go, need_auth=False)
    view = _grant_view(s.url, grant, _remember_session(s.url, grant))
    emit(as_json, view, lambda: click.echo(f"signed up and logged in to {s.url} as {email} (tenant {grant['tenant']['tenant_id']})"))


@click.command()
@common_options
@click.pass_context
def logout(ctx: click.Context) -> None:
    """End the stored session (on the server too) and forget its token."""
    from engine.client.errors import Unauthenticated

    s = settings(ctx)
    creds = load_credentials()
    session = creds["sessions"].pop(s.url, None)
    if session is None:
        click.echo(f"not logged in to {s.url}")
        return

    async def go(api: AsyncClient) -> None:
        api.token, api.api_key = session["token"], None
        try:
            await api.logout()
        except Unauthenticated:
            pass  # already expired or ended

    run(ctx, go, need_auth=False)
    save_credentials(creds)
    click.echo(f"logged out of {s.url}")


@click.command()
@common_options
@json_option
@click.pass_context
def whoami(ctx: click.Context, as_json: bool) -> None:
    """Who the current credentials belong to, with roles and scopes."""

    async def go(api: AsyncClient) -> Any:
        return await api.me()

    me = run(ctx, go)
    emit(as_json, me, lambda: print_record({
        "url": settings(ctx).url, "email": me["user"]["email"], "user_id": me["user"]["user_id"],
        "tenant_id": me["tenant"]["tenant_id"], "roles": ", ".join(me["roles"]), "scopes": " ".join(me["scopes"]),
    }))
