"""``GET /console``: the platform admins' review console, and its cookie session.

The console is static files in this package (``console_static/``: HTML, CSS and
framework-free JavaScript; no build step, nothing from a CDN). Plain JavaScript rather
than htmx: htmx swaps in HTML the server renders, which would make the console a second
rendering of the queue beside the JSON API; this page reads the very JSON ``ipto review``
reads and decides through the same routes, so the two cannot drift apart, and ~600 lines
of script need no library. This blueprint only serves the files and turns a platform
admin's email and password into a session cookie:

* ``POST /console/login`` opens a session for a platform admin (anyone else: 403 and no
  session) and sets it as the ``ipto_console`` cookie: ``HttpOnly`` (no script reads it),
  ``SameSite=Strict`` (no other site's page sends it), ``Secure`` when the engine is
  reached over TLS. The answer carries the session's CSRF token, which the page sends as
  ``X-CSRF-Token`` with every state change (``engine.http.api`` refuses one without it).
* ``GET /console/session`` gives the page its user and CSRF token again (after a reload).
* ``POST /console/logout`` ends the session and clears the cookie.

``GET /console`` answers the console only to a valid platform admin session; everyone
else gets the login page, and the console's script is not served to them either. Every
page carries a Content-Security-Policy that allows scripts, styles and images from this
origin only, no inline script, and Trusted Types with no policy, so no string can ever be
turned into markup in the page (``innerHTML`` throws), whatever an uploaded file contains.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from typing import Any

from quart import Blueprint, Response, request

from engine.auth import ADMIN_SCOPE, Principal
from engine.errors import Forbidden, InvalidRequest, NotFound, Unauthenticated
from engine.http.api import SESSION_COOKIE, credentials, services
from engine.http.identity import LOGIN, user_view
from engine.http.respond import ok
from engine.http.routes import route
from engine.http.schemas import CONSOLE_LOGIN, CONSOLE_SESSION, LOGGED_OUT
from engine.identity import token_hash
from engine.ids import iso

bp = Blueprint("console", __name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "require-trusted-types-for 'script'; trusted-types 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "login.js": "text/javascript; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
PUBLIC_ASSETS = frozenset({"console.css", "login.js"})  # what the login page needs


@functools.cache
def _file(name: str) -> bytes:
    """A file of ``console_static/`` (read once: they change only with the package)."""
    return (resources.files("engine.http") / "console_static" / name).read_bytes()


def _etag(name: str) -> str:
    return '"' + hashlib.sha256(_file(name)).hexdigest()[:32] + '"'


def _static(name: str, content_type: str, cache: str) -> Response:
    response = Response(_file(name), content_type=content_type, headers=SECURITY_HEADERS)
    response.headers["Cache-Control"] = cache
    return response


async def _console_admin() -> Principal | None:
    """The platform admin whose console session cookie this request carries, if any."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        principal = await services().identity.authenticate(token, None)
    except Unauthenticated:
        return None
    return principal if principal.is_platform_admin else None


def _secure_cookie() -> bool:
    """Mark the cookie ``Secure`` when the browser reaches us over TLS (directly, or
    through a proxy whose public URL is https)."""
    return request.scheme == "https" or services().cfg.public_url.startswith("https://")


@route(bp, "GET", "/console", summary="The review console page", wrap=False, ok=(200, {"type": "string"}),
       ok_content_type="text/html")
async def page() -> Response:
    name = "console.html" if await _console_admin() is not None else "login.html"
    return _static(name, "text/html; charset=utf-8", "no-store")


@route(bp, "GET", "/console/", summary="The review console page (redirect)", wrap=False, ok=(308, None),
       ok_content_type="text/html")
async def page_with_slash() -> Response:
    return Response(b"", status=308, headers={"Location": "/console"})


@route(bp, "GET", "/console/static/<name>", summary="A review console asset", wrap=False, ok=(200, {"type": "string"}),
       ok_content_type=("text/css", "text/javascript"), errors=(304,), path_schemas={"name": {"type": "string", "enum": [*ASSETS]}})
async def asset(name: str) -> Response:
    if name not in ASSETS or (name not in PUBLIC_ASSETS and await _console_admin() is None):
        raise NotFound("no such console file")
    if request.headers.get("If-None-Match") == _etag(name):
        return Response(b"", status=304, headers={"ETag": _etag(name)})
    response = _static(name, ASSETS[name], "no-cache")  # revalidated: a new engine version is picked up at once
    response.headers["ETag"] = _etag(name)
    return response


def _same_site_json() -> None:
    # A login form posted from another site would sign the browser into the attacker's
    # account (login CSRF): only our own page's fetch() is accepted.
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise Forbidden("sign in from the console's own page")
    if request.mimetype != "application/json":
        raise InvalidRequest("the body must be sent as Content-Type: application/json", {"fields": {"content_type": "must be application/json"}})


@route(bp, "POST", "/console/login", summary="Console sign-in (platform admins)", wrap=False, body=LOGIN,
       precheck=_same_site_json, ok=(200, CONSOLE_LOGIN), errors=(401, 403))
async def login(body: dict[str, Any]) -> Response:
    """Sets the ``ipto_console`` session cookie (HttpOnly, SameSite=Strict)."""
    svc = services()
    grant = await svc.identity.login(body["email"], body["password"], platform_admin_only=True)
    response = ok({"user": user_view(grant.user), "csrf_token": svc.csrf.token(token_hash(grant.token)), "expires_at": iso(grant.expires_at)})
    max_age = max(0, int((grant.expires_at - svc.now()).total_seconds()))
    response.set_cookie(
        SESSION_COOKIE, grant.token, max_age=max_age, path="/", httponly=True, samesite="Strict", secure=_secure_cookie()
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@route(bp, "GET", "/console/session", summary="The console's session", scope=ADMIN_SCOPE, ok=(200, CONSOLE_SESSION))
async def session(principal: Principal) -> Response:
    svc = services()
    user = await svc.store.get_user(principal.user_id)
    assert user is not None  # (a session's user exists: a foreign key guarantees it)
    _, _, via_cookie = credentials()
    csrf = svc.csrf.token(principal.session_hash) if via_cookie and principal.session_hash else None
    return ok({"user": user_view(user), "csrf_token": csrf})


@route(bp, "POST", "/console/logout", summary="Console sign-out", ok=(200, LOGGED_OUT))
async def logout(principal: Principal) -> Response:
    await services().identity.logout(principal)
    response = ok({"logged_out": True})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict", secure=_secure_cookie())
    return response
