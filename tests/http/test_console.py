"""The console's pages and cookie session, over plain HTTP: who gets what, cookie flags, CSRF.

(tests/browser drives the same console in a real Chromium.)
"""

from __future__ import annotations

import httpx
import pytest
import trio

from engine.http.console import CSP
from engine.service import run_service
from tests.conftest import create_dataset, error_of, make_config
from tests.http.review_helpers import ADMIN, ADMIN_EMAIL, ADMIN_PASSWORD, QUEUE, stage

TEXT = b"Invoice 0425 from Globex Corporation.\n"


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **ADMIN)


async def _login(client: httpx.AsyncClient, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD, **headers: str) -> httpx.Response:
    response = await client.post("/console/login", json={"email": email, "password": password}, headers=headers)
    client.cookies.clear()  # each test says which cookie it sends
    return response


def _cookie(response: httpx.Response) -> dict[str, str]:
    """The session cookie a login answer set, as a Cookie header."""
    value = response.headers["set-cookie"].split(";", 1)[0]
    assert value.startswith("ipto_console=")
    return {"Cookie": value}


@pytest.fixture(name="session")
async def _session(client):
    """An admin's console session: its Cookie header and CSRF token."""
    r = await _login(client)
    assert r.status_code == 200, r.text
    return _cookie(r), r.json()["data"]["csrf_token"]


@pytest.fixture(name="staged")
async def _staged(client, alice):
    ds = await create_dataset(client, alice.headers)
    return await stage(client, alice.headers, ds["dataset_id"], TEXT, "a.txt", "text/plain")


def _is_login_page(r: httpx.Response) -> bool:
    return r.status_code == 200 and 'id="login-form"' in r.text and "console.js" not in r.text


async def test_logged_out_and_tenants_get_only_the_login_page(client, alice):
    r = await client.get("/console")
    assert _is_login_page(r)
    assert r.headers["content-security-policy"] == CSP and r.headers["cache-control"] == "no-store"
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert (await client.get("/console/static/console.js")).status_code == 404
    for name, kind in (("login.js", "text/javascript"), ("console.css", "text/css")):
        asset = await client.get(f"/console/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
    assert (await client.get("/console/static/../review.py")).status_code == 404
    assert (await client.get("/console/static/nope.js")).status_code == 404

    # A tenant's password is right, but the console is not for tenants: no session, no cookie.
    r = await _login(client, alice.email, "correct horse battery")
    assert r.status_code == 403 and "set-cookie" not in r.headers
    assert "platform admins" in error_of(r)["message"]
    # Even with a tenant's session token in the cookie, only the login page.
    token = alice.headers["Authorization"].split()[1]
    assert _is_login_page(await client.get("/console", headers={"Cookie": f"ipto_console={token}"}))
    assert (await client.get("/console/static/console.js", headers={"Cookie": f"ipto_console={token}"})).status_code == 404
    assert (await client.get(QUEUE, headers={"Cookie": f"ipto_console={token}"})).status_code == 403

    r = await _login(client, ADMIN_EMAIL, "wrong password")
    assert r.status_code == 401 and "set-cookie" not in r.headers
    assert _is_login_page(await client.get("/console", headers={"Cookie": "ipto_console=forged"}))


async def test_an_admin_login_sets_a_strict_httponly_cookie_and_gets_the_console(client, session):
    r = await _login(client)
    flags = [part.strip().lower() for part in r.headers["set-cookie"].split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain HTTP here: a Secure cookie would never come back
    assert any(f.startswith("max-age=") and int(f.split("=")[1]) > 3600 for f in flags)
    assert r.json()["data"]["user"]["is_platform_admin"] is True and r.json()["data"]["csrf_token"]

    cookie, csrf = session
    page = await client.get("/console", headers=cookie)
    assert page.status_code == 200 and "/console/static/console.js" in page.text and 'id="queue"' in page.text
    assert page.headers["content-security-policy"] == CSP
    js = await client.get("/console/static/console.js", headers=cookie)
    assert js.status_code == 200 and js.headers["etag"]
    assert (await client.get("/console/static/console.js", headers={**cookie, "If-None-Match": js.headers["etag"]})).status_code == 304
    me = (await client.get("/console/session", headers=cookie)).json()["data"]
    assert me["csrf_token"] == csrf and me["user"]["email"] == ADMIN_EMAIL


async def test_a_cookie_alone_never_authorizes_a_change(client, session, staged, alice):
    cookie, csrf = session
    assert (await client.get(QUEUE, headers=cookie)).status_code == 200  # reading needs no token

    # A non-ASCII token (any Latin-1 byte may come in a header) was a 500: compare_digest refuses such str.
    for headers in (cookie, {**cookie, "X-CSRF-Token": "forged"}, {**cookie, "X-CSRF-Token": ""}, {**cookie, "X-CSRF-Token": b"\xe9t\xe9"}):
        for method, path in (("POST", f"{QUEUE}/{staged}/approve"), ("POST", f"{QUEUE}/{staged}/reject"),
                             ("POST", f"{QUEUE}/{staged}/claim"), ("GET", f"{QUEUE}/{staged}"),  # opening claims
                             ("POST", f"{QUEUE}/approve/batch"), ("POST", "/console/logout"),
                             ("POST", "/v1/datasets"), ("DELETE", f"/v1/objects/{staged}")):
            r = await client.request(method, path, headers=headers, json={"object_ids": [staged]} if "batch" in path else None)
            assert r.status_code == 403 and error_of(r)["code"] == "csrf_failed", (method, path, r.text)
    obj = (await client.get(f"/v1/objects/{staged}", headers=alice.headers)).json()["data"]
    assert obj["review_state"] == "staged"

    r = await client.post(f"{QUEUE}/{staged}/approve", headers={**cookie, "X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["data"]["job_id"].startswith("job_")


async def test_the_cookie_adds_nothing_to_other_credentials(client, session, staged, alice):
    cookie, csrf = session
    # A tenant's bearer token with an admin's cookie is the tenant: no admin scope.
    r = await client.get(QUEUE, headers={**cookie, **alice.headers})
    assert r.status_code == 403 and error_of(r)["details"]["required_scope"] == "admin:*"
    # A bad bearer token is refused, not replaced by the cookie.
    r = await client.get(QUEUE, headers={**cookie, "Authorization": "Bearer not-a-token"})
    assert r.status_code == 401
    # Bearer and API-key callers need no CSRF token: browsers never send those by themselves.
    r = await client.post(f"{QUEUE}/{staged}/claim", headers={**cookie, **alice.headers})
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"


async def test_a_csrf_token_belongs_to_its_session(client, session, staged):
    cookie, _ = session
    other = await _login(client)
    other_csrf = other.json()["data"]["csrf_token"]
    r = await client.post(f"{QUEUE}/{staged}/claim", headers={**cookie, "X-CSRF-Token": other_csrf})
    assert r.status_code == 403 and error_of(r)["code"] == "csrf_failed"


async def test_logout_ends_the_session_and_clears_the_cookie(client, session):
    cookie, csrf = session
    r = await client.post("/console/logout", headers={**cookie, "X-CSRF-Token": csrf})
    assert r.status_code == 200
    cleared = r.headers["set-cookie"].lower()
    assert cleared.startswith('ipto_console=""') or cleared.startswith("ipto_console=;")
    assert "max-age=0" in cleared or "expires=thu, 01 jan 1970" in cleared
    assert (await client.get(QUEUE, headers=cookie)).status_code == 401
    assert _is_login_page(await client.get("/console", headers=cookie))


async def test_login_is_refused_from_another_site_or_as_a_form(client):
    r = await _login(client, **{"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = await client.post("/console/login", content=f"email={ADMIN_EMAIL}&password=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "set-cookie" not in r.headers
    r = await client.post("/console/login", json={"email": ADMIN_EMAIL})
    assert r.status_code == 400 and "password" in error_of(r)["details"]["fields"]


async def test_the_cookie_is_secure_when_the_console_is_reached_over_tls(tmp_path, nursery):
    cfg = make_config(tmp_path / "tls", **ADMIN, **{"http.public_url": "https://review.example.com"})
    handle = await nursery.start(run_service, cfg)
    try:
        port = handle.services.cfg.http.port
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            r = await _login(client)
            assert r.status_code == 200
            assert "secure" in [part.strip().lower() for part in r.headers["set-cookie"].split(";")]
    finally:
        handle.stop()
        await trio.sleep(0)


async def test_console_with_a_trailing_slash_redirects(client):
    r = await client.get("/console/")
    assert r.status_code == 308 and r.headers["location"] == "/console"
