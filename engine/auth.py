"""Who is calling: principals, scopes and the per-dataset access rule.

Scopes (seed 003): a tenant owner's session holds every scope but ``admin:*``; a platform
admin's session also holds ``admin:*``; an API key holds exactly the scopes it was made
with (never more than its creator had).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import Forbidden

ADMIN_SCOPE = "admin:*"
TENANT_SCOPES: tuple[str, ...] = (
    "datasets:read",
    "datasets:write",
    "objects:write",
    "search:query",
    "usage:read",
    "keys:write",
    "billing:read",
)
ALL_SCOPES: tuple[str, ...] = (*TENANT_SCOPES, ADMIN_SCOPE)

ACCESS_MODES = ("all_available", "allow_list")
PRINCIPAL_KINDS = ("session", "api_key")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    kind: str  # one of PRINCIPAL_KINDS
    user_id: str
    tenant_id: str
    scopes: frozenset[str]
    roles: tuple[str, ...]
    is_platform_admin: bool = False
    session_hash: str | None = None
    api_key_id: str | None = None
    dataset_access_mode: str = "all_available"
    dataset_ids: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        """Stable identity for per-principal records (idempotency keys)."""
        return f"key:{self.api_key_id}" if self.api_key_id else f"user:{self.user_id}"

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this request needs the {scope} scope", {"required_scope": scope})

    def may_use_dataset(self, dataset_id: str) -> bool:
        return self.dataset_access_mode == "all_available" or dataset_id in self.dataset_ids

    def require_dataset(self, dataset_id: str) -> None:
        """Raise Forbidden when an allow-list key is used on a dataset outside its list.

        Call it only after the dataset was found in the caller's tenant: another tenant's
        dataset is a 404 first, so its existence is never revealed."""
        if not self.may_use_dataset(dataset_id):
            raise Forbidden("this API key is not allowed to use this dataset", {"dataset_id": dataset_id})
