"""Signup, login, logout, sessions, /v1/me, platform admins."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from engine.auth import TENANT_SCOPES
from engine.ids import utcnow
from tests.conftest import backend_env, error_of, signup
from tests.rawdb import dump, query


async def test_signup_creates_tenant_owner_and_session(client):
    r = await client.post(
        "/v1/auth/signup", json={"email": "Ann@Example.com", "password": "long enough pw", "name": "Ann", "tenant_name": "Ann Data"}
    )
    assert r.status_code == 201
    data = r.json()["data"]
    assert data["user"]["email"] == "ann@example.com"
    assert data["user"]["user_id"].startswith("usr_")
    assert data["tenant"] == {"tenant_id": data["tenant"]["tenant_id"], "name": "Ann Data", "created_at": data["tenant"]["created_at"]}
    assert data["tenant"]["tenant_id"].startswith("tnt_")
    me = (await client.get("/v1/me", headers={"Authorization": f"Bearer {data['token']}"})).json()["data"]
    assert me["roles"] == ["owner"]
    assert set(me["scopes"]) == set(TENANT_SCOPES)
    assert "admin:*" not in me["scopes"]
    assert me["tenant"]["tenant_id"] == data["tenant"]["tenant_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": "long enough pw"}, "email"),
        ({"email": "a@b.co", "password": "short"}, "password"),
        ({"email": "a@b.co"}, "password"),
        ({"password": "long enough pw"}, "email"),
        ({"email": 12, "password": "long enough pw"}, "email"),
    ],
)
async def test_signup_rejects_bad_fields(client, body, field):
    r = await client.post("/v1/auth/signup", json=body)
    assert r.status_code == 400
    assert field in error_of(r)["details"]["fields"]


async def test_signup_with_taken_email_is_conflict(client, alice):
    r = await client.post("/v1/auth/signup", json={"email": alice.email.upper(), "password": "another password"})
    assert r.status_code == 409
    assert error_of(r)["code"] == "conflict"


async def test_login_and_wrong_password(client, alice):
    r = await client.post("/v1/auth/login", json={"email": alice.email, "password": "correct horse battery"})
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["token"] != alice.token and data["user"]["user_id"] == alice.user_id
    assert data["tenant"]["tenant_id"] == alice.tenant_id
    for email, pw in [(alice.email, "wrong password"), ("nobody@example.com", "correct horse battery")]:
        r = await client.post("/v1/auth/login", json={"email": email, "password": pw})
        assert r.status_code == 401
        assert error_of(r)["message"] == "invalid email or password"


async def test_logout_ends_the_session_at_once(client, alice):
    assert (await client.get("/v1/me", headers=alice.headers)).status_code == 200
    r = await client.post("/v1/auth/logout", headers=alice.headers)
    assert r.status_code == 200
    r = await client.get("/v1/me", headers=alice.headers)
    assert r.status_code == 401
    assert error_of(r)["code"] == "unauthenticated"


async def test_expired_session_is_refused(client, alice, service, monkeypatch):
    later = utcnow() + timedelta(seconds=service.services.cfg.auth.session_ttl_seconds + 1)
    monkeypatch.setattr(service.services.identity, "now", lambda: later)
    assert (await client.get("/v1/me", headers=alice.headers)).status_code == 401


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}, {"X-API-Key": "ipto_abc_def"}, {"Authorization": "Token abc"}],
)
async def test_missing_or_bad_credentials_are_401(client, headers):
    r = await client.get("/v1/me", headers=headers)
    assert r.status_code == 401
    assert error_of(r)["code"] == "unauthenticated"


async def test_passwords_and_tokens_are_hashed_at_rest(client, alice, cfg):
    [(pw_hash,)] = query(cfg, "SELECT password_hash FROM users WHERE id = ?", alice.user_id)
    assert pw_hash.startswith("$argon2id$")
    text = dump(cfg)
    assert "correct horse battery" not in text
    assert alice.token not in text


async def test_bootstrap_admin_from_environment_holds_admin_scope(nursery, tmp_path):
    import httpx

    from engine.service import run_service
    from tests.conftest import make_config

    cfg = make_config(tmp_path / "d", **{"admin.bootstrap_email": "root@example.com", "admin.bootstrap_password": "admin password"})
    handle = await nursery.start(run_service, cfg)
    async with httpx.AsyncClient(base_url=handle.url) as client:
        r = await client.post("/v1/auth/login", json={"email": "root@example.com", "password": "admin password"})
        me = (await client.get("/v1/me", headers={"Authorization": f"Bearer {r.json()['data']['token']}"})).json()["data"]
    handle.stop()
    assert "admin:*" in me["scopes"]
    assert "platform_admin" in me["roles"]
    assert me["user"]["is_platform_admin"] is True


async def test_admin_create_user_command_makes_a_platform_admin(client, service, cfg):
    out = subprocess.run(
        [sys.executable, "-m", "engine", "admin", "create-user", "--email", "ops@example.com",
         "--password", "ops password", "--platform-admin", "--data-dir", str(cfg.data_dir)],
        capture_output=True, text=True, timeout=60, env=backend_env(cfg),
    )
    assert out.returncode == 0, out.stderr
    assert "platform admin" in out.stdout
    r = await client.post("/v1/auth/login", json={"email": "ops@example.com", "password": "ops password"})
    me = (await client.get("/v1/me", headers={"Authorization": f"Bearer {r.json()['data']['token']}"})).json()["data"]
    assert "admin:*" in me["scopes"]


async def test_plain_user_promoted_by_admin_command(client, alice, cfg):
    out = subprocess.run(
        [sys.executable, "-m", "engine", "admin", "create-user", "--email", alice.email,
         "--password", "ignored password", "--platform-admin", "--data-dir", str(cfg.data_dir)],
        capture_output=True, text=True, timeout=60, env=backend_env(cfg),
    )
    assert out.returncode == 0, out.stderr
    me = (await client.get("/v1/me", headers=alice.headers)).json()["data"]
    assert "admin:*" in me["scopes"]


async def test_signup_of_second_user_gets_own_tenant(client, alice):
    other = await signup(client)
    assert other.tenant_id != alice.tenant_id
