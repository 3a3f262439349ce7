"""Accounts, sessions and API keys.

* Passwords: argon2id (argon2-cffi), hashed and verified on a worker thread because
  the KDF is deliberately slow and memory-hard.
* Session tokens: 32 random bytes; only their SHA-256 is stored (a token of that entropy
  needs no slow hash), with an expiry.
* API keys: ``ipto_{prefix}_{secret}``. The prefix is the lookup key (unique, indexed);
  only the SHA-256 of the secret is stored and compared with ``hmac.compare_digest``, so
  a request costs one indexed lookup and one constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import argon2
import structlog
import trio

from engine.auth import ACCESS_MODES, ADMIN_SCOPE, ALL_SCOPES, TENANT_SCOPES, Principal
from engine.config import AuthConfig
from engine.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthenticated, UniqueViolation
from engine.ids import new_id, utcnow
from engine.pagination import Page, page_of
from engine.store.base import Store
from engine.store.records import ApiKey, Membership, Session, Tenant, User

log = structlog.get_logger(__name__)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ALNUM = string.ascii_lowercase + string.digits
_KEY_FORMAT = re.compile(r"^ipto_([a-z0-9]{8})_([A-Za-z0-9]{40})$")
# argon2id with OWASP's recommended parameters (19 MiB, t=2, p=1). The library default
# (RFC 9106 "low memory", 64 MiB) makes every concurrent login hold 64 MiB; with
# KDF_SLOTS bounding concurrency, password hashing never needs more than ~40 MiB.
_hasher = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
KDF_SLOTS = 2
# Verified when an email is unknown, so that a login takes as long either way.
_DUMMY_HASH = _hasher.hash("not a password: timing equaliser")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def token_hash(token: str) -> str:
    """What the store keeps of a session token (and what its CSRF token is derived from)."""
    return _sha256(token)


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 254:
        raise InvalidRequest("email is not a valid address", {"fields": {"email": "not a valid email address"}})
    return email


def check_password(password: str) -> None:
    if not 8 <= len(password) <= 1024:
        raise InvalidRequest(
            "password must be 8 to 1024 characters", {"fields": {"password": "must be 8 to 1024 characters"}}
        )


@dataclass(frozen=True)
class SessionGrant:
    token: str
    expires_at: datetime
    user: User
    tenant: Tenant


@dataclass(frozen=True)
class NewApiKey:
    key: ApiKey
    plaintext: str


def manages(principal: Principal, key: ApiKey) -> bool:
    """Whether ``principal`` may see and manage ``key``: a session manages every key of its
    tenant; a key only those whose scopes are all its own and whose datasets are within its
    own (an ``allow_list`` key: only ``allow_list`` keys naming none but its datasets). So a
    narrower key can neither read nor revoke a broader one."""
    if principal.kind != "api_key":
        return True
    if not set(key.scopes) <= set(principal.scopes):
        return False
    if principal.dataset_access_mode == "allow_list":
        return key.dataset_access_mode == "allow_list" and set(key.dataset_ids) <= set(principal.dataset_ids)
    return True


class Identity:
    """Signup, login, request authentication and API keys."""

    def __init__(self, store: Store, cfg: AuthConfig, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.cfg = cfg
        self.now = now
        self._kdf = trio.CapacityLimiter(KDF_SLOTS)

    # -- accounts -----------------------------------------------------------------
    async def create_account(
        self,
        email: str,
        password: str,
        name: str | None = None,
        tenant_name: str | None = None,
        *,
        platform_admin: bool = False,
    ) -> tuple[User, Tenant]:
        email = normalize_email(email)
        check_password(password)
        now = self.now()
        password_hash = await trio.to_thread.run_sync(_hasher.hash, password, limiter=self._kdf)
        user = User(new_id("usr"), email, name, password_hash, platform_admin, now)
        tenant = Tenant(new_id("tnt"), tenant_name or name or email.split("@")[0], now)
        try:
            await self.store.create_account(tenant, user, Membership(tenant.id, user.id, "owner", now))
        except UniqueViolation:
            raise Conflict("an account with this email already exists", {"fields": {"email": "already registered"}}) from None
        log.info("account_created", user_id=user.id, tenant_id=tenant.id, platform_admin=platform_admin)
        return user, tenant

    async def ensure_platform_admin(self, email: str, password: str) -> User:
        """Create a platform admin, or promote the existing user with this email."""
        existing = await self.store.get_user_by_email(normalize_email(email))
        if existing is not None:
            if not existing.is_platform_admin:
                await self.store.set_platform_admin(existing.id, True)
                log.info("platform_admin_promoted", user_id=existing.id)
            return existing
        try:
            user, _ = await self.create_account(email, password, name="Platform admin", tenant_name="Platform", platform_admin=True)
        except Conflict:  # another engine process bootstrapped it a moment ago
            return await self.ensure_platform_admin(email, password)
        return user

    async def signup(self, email: str, password: str, name: str | None, tenant_name: str | None) -> SessionGrant:
        user, tenant = await self.create_account(email, password, name, tenant_name)
        return await self._open_session(user, tenant)

    async def login(self, email: str, password: str, *, platform_admin_only: bool = False) -> SessionGrant:
        """Open a session for the right email and password (``platform_admin_only``: the
        review console's login, which opens none for anyone else)."""
        try:
            email = normalize_email(email)
        except InvalidRequest:
            email = ""
        user = await self.store.get_user_by_email(email) if email else None
        try:
            await trio.to_thread.run_sync(_hasher.verify, user.password_hash if user else _DUMMY_HASH, password, limiter=self._kdf)
        except argon2.exceptions.VerificationError:
            user = None
        except argon2.exceptions.InvalidHashError:
            user = None
        if user is None:
            raise Unauthenticated("invalid email or password")
        if platform_admin_only and not user.is_platform_admin:
            raise Forbidden("only platform admins may sign in to the review console", {"required_scope": ADMIN_SCOPE})
        membership = await self.store.first_membership(user.id)
        tenant = await self.store.get_tenant(membership.tenant_id) if membership else None
        if tenant is None:
            raise Unauthenticated("this account has no tenant")
        return await self._open_session(user, tenant)

    async def _open_session(self, user: User, tenant: Tenant) -> SessionGrant:
        token = secrets.token_urlsafe(32)
        now = self.now()
        expires_at = now + timedelta(seconds=self.cfg.session_ttl_seconds)
        await self.store.create_session(Session(_sha256(token), user.id, tenant.id, now, expires_at))
        return SessionGrant(token, expires_at, user, tenant)

    async def logout(self, principal: Principal) -> None:
        if principal.session_hash is None:
            raise InvalidRequest("logout ends a session; revoke an API key with DELETE /v1/api-keys/{id}")
        await self.store.revoke_session(principal.session_hash, self.now())

    # -- authentication -------------------------------------------------------------
    async def authenticate(self, bearer: str | None, api_key: str | None) -> Principal:
        """Resolve the request's credentials to a principal, or raise Unauthenticated."""
        if api_key:
            return await self._from_api_key(api_key)
        if bearer:
            return await self._from_session(bearer)
        raise Unauthenticated("authentication required: send Authorization: Bearer <token> or X-API-Key")

    async def _from_session(self, token: str) -> Principal:
        found = await self.store.session_principal(_sha256(token))
        if found is None:
            raise Unauthenticated("the session token is invalid or has expired")
        session, is_admin, role = found
        if session.revoked_at is not None or session.expires_at <= self.now():
            raise Unauthenticated("the session token is invalid or has expired")
        scopes = set(TENANT_SCOPES)
        roles = [role]
        if is_admin:
            scopes.add(ADMIN_SCOPE)
            roles.append("platform_admin")
        return Principal(
            kind="session", user_id=session.user_id, tenant_id=session.tenant_id, scopes=frozenset(scopes),
            roles=tuple(roles), is_platform_admin=is_admin, session_hash=session.token_hash,
        )

    async def _from_api_key(self, presented: str) -> Principal:
        match = _KEY_FORMAT.match(presented.strip())
        key = await self.store.get_api_key_by_prefix(match.group(1)) if match else None
        # Compare even when nothing was found, so a probe cannot time prefix existence.
        expected = key.secret_hash if key else _sha256("")
        secret_ok = hmac.compare_digest(expected, _sha256(match.group(2) if match else "x"))
        if key is None or not secret_ok or key.revoked_at is not None:
            raise Unauthenticated("the API key is invalid or revoked")
        now = self.now()  # (the key's user exists: a foreign key guarantees it)
        interval = timedelta(seconds=self.cfg.api_key_touch_interval_seconds)
        if key.last_used_at is None or key.last_used_at < now - interval:
            await self.store.touch_api_key(key.id, now, now - interval)
        return Principal(
            kind="api_key", user_id=key.user_id, tenant_id=key.tenant_id, scopes=frozenset(key.scopes),
            roles=(), is_platform_admin=ADMIN_SCOPE in key.scopes, api_key_id=key.id,
            dataset_access_mode=key.dataset_access_mode, dataset_ids=frozenset(key.dataset_ids),
        )

    # -- API keys -------------------------------------------------------------------
    async def _check_dataset_list(self, principal: Principal, mode: str, dataset_ids: Sequence[str]) -> None:
        if mode == "all_available":
            if dataset_ids:
                raise InvalidRequest(
                    "dataset_ids is only used with dataset_access_mode allow_list",
                    {"fields": {"dataset_ids": "must be empty when dataset_access_mode is all_available"}},
                )
            return
        found = await self.store.existing_dataset_ids(principal.tenant_id, dataset_ids)
        missing = [d for d in dataset_ids if d not in found]
        if missing:
            raise InvalidRequest("unknown dataset ids", {"fields": {"dataset_ids": "unknown datasets"}, "unknown": missing})
        outside = [d for d in dataset_ids if not principal.may_use_dataset(d)]
        if outside:
            raise Forbidden("a key cannot be given datasets its creator may not use", {"dataset_ids": outside})

    async def create_api_key(
        self, principal: Principal, name: str, scopes: Sequence[str], mode: str, dataset_ids: Sequence[str]
    ) -> NewApiKey:
        assert mode in ACCESS_MODES
        unknown = [s for s in scopes if s not in ALL_SCOPES]
        if unknown:
            raise InvalidRequest("unknown scopes", {"fields": {"scopes": f"unknown: {', '.join(unknown)}"}})
        beyond = [s for s in scopes if s not in principal.scopes]
        if beyond:
            raise Forbidden("a key cannot hold scopes its creator does not have", {"scopes": beyond})
        if principal.dataset_access_mode == "allow_list" and mode == "all_available":
            raise Forbidden("an allow-list key can only create allow-list keys")
        await self._check_dataset_list(principal, mode, dataset_ids)
        prefix = _random(_ALNUM, 8)
        secret = _random(string.ascii_letters + string.digits, 40)
        key = ApiKey(
            id=new_id("key"), tenant_id=principal.tenant_id, user_id=principal.user_id, name=name, prefix=prefix,
            secret_hash=_sha256(secret), scopes=tuple(dict.fromkeys(scopes)), dataset_access_mode=mode,
            dataset_ids=tuple(dict.fromkeys(dataset_ids)), created_at=self.now(),
        )
        await self.store.create_api_key(key)
        log.info("api_key_created", api_key_id=key.id, scopes=list(key.scopes))
        return NewApiKey(key, f"ipto_{prefix}_{secret}")

    async def list_api_keys(self, principal: Principal, cursor: str | None, limit: int) -> Page[ApiKey]:
        """The tenant's keys the caller may manage (:func:`manages`), newest first."""

        async def fetch(after: int | None, n: int) -> list[ApiKey]:
            shown: list[ApiKey] = []
            while len(shown) < n:
                rows = await self.store.list_api_keys(principal.tenant_id, after, n)
                shown.extend(key for key in rows if manages(principal, key))
                if len(rows) < n:
                    break
                after = rows[-1].seq
            return shown[:n]

        return await page_of(fetch, cursor, limit)

    async def get_api_key(self, principal: Principal, key_id: str) -> ApiKey:
        """A key the caller may manage; 404 for any other (as if it did not exist)."""
        key = await self.store.get_api_key(principal.tenant_id, key_id)
        if key is None or not manages(principal, key):
            raise NotFound("API key not found")
        return key

    async def update_api_key(
        self, principal: Principal, key_id: str, name: str | None, mode: str | None, dataset_ids: Sequence[str] | None
    ) -> ApiKey:
        key = await self.get_api_key(principal, key_id)
        if key.revoked_at is not None:
            raise Conflict("a revoked API key cannot be changed", {"revoked_at": key.revoked_at.isoformat()})
        new_mode = mode or key.dataset_access_mode
        new_ids: Sequence[str] = dataset_ids if dataset_ids is not None else (key.dataset_ids if mode in (None, "allow_list") else ())
        if principal.dataset_access_mode == "allow_list" and new_mode == "all_available":
            raise Forbidden("an allow-list key can only grant allow-list access")
        await self._check_dataset_list(principal, new_mode, new_ids)
        changes: dict[str, object] = {"dataset_access_mode": new_mode, "dataset_ids": tuple(dict.fromkeys(new_ids))}
        if name is not None:
            changes["name"] = name
        updated = await self.store.update_api_key(principal.tenant_id, key_id, changes)
        assert updated is not None
        return updated

    async def revoke_api_key(self, principal: Principal, key_id: str) -> ApiKey:
        key = await self.get_api_key(principal, key_id)
        if key.revoked_at is not None:
            return key
        updated = await self.store.update_api_key(principal.tenant_id, key_id, {"revoked_at": self.now()})
        assert updated is not None
        log.info("api_key_revoked", api_key_id=key_id)
        return updated
