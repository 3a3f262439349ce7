"""``ipto login``, ``logout``, ``signup``, ``whoami``: sessions kept in the user's config dir."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from engine.cli.context import common_options, json_option, load_credentials, run, save_credentials, settings
from engine.cli.output import emit, print_record

if TYPE_CHECKING:
    from engine.client import AsyncClient


def _remember_session(url: str, grant: dict[str, Any]) -> str:
    creds = load_credentials()
    creds["default_url"] = url
    creds["sessions"][url] = {"token": grant["token"], "expires_at": grant["expires_at"], "email": grant["user"]["email"]}
    return str(save_credentials(creds))


def _grant_view(url: str, grant: dict[str, Any], stored: str) -> dict[str, Any]:
    return {"url": url, "user": grant["user"], "tenant": grant["tenant"], "expires_at": grant["expires_at"], "credentials_file": stored}


@click.command()
@click.option("--email", prompt=True, help="Account email (prompted when missing).")
@click.option("--password", prompt=True, hide_input=True, help="Password (prompted, hidden, when missing).")
@common_options
@json_option
@click.pass_context
def login(ctx: click.Context, email: str, password: str, as_json: bool) -> None:
    """Log in and keep the session token (file readable by you only) for this server."""
    s = settings(ctx)

    async def go(api: AsyncClient) -> Any:
        return await api.login(email, password)

    grant = run(ctx, go, need_auth=False)
    view = _grant_view(s.url, grant, _remember_session(s.url, grant))
    emit(as_json, view, lambda: click.echo(f"logged in to {s.url} as {grant['user']['email']} (tenant {grant['tenant']['tenant_id']})"))


@click.command()
@click.option("--email", prompt=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--name", default=None, help="Your name.")
@click.option("--tenant-name", default=None, help="Name of the organisation (tenant) created with the account.")
@common_options
@json_option
@click.pass_context
def signup(ctx: click.Context, email: str, password: str, name: str | None, tenant_name: str | None, as_json: bool) -> None:
    """Create an account (and its tenant) and log in to it."""
    s = settings(ctx)

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
