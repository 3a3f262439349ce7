"""Shapes of the API's answers (the ``data`` of the envelope), as TypedDicts.

They type what the server sends (API.md); at run time they are plain dicts, so fields a
newer server adds are kept and nothing is validated here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypedDict, TypeVar

T = TypeVar("T")

IMPORT_TERMINAL = frozenset({"complete", "partial", "failed", "pending_schema"})
JOB_TERMINAL = frozenset({"succeeded", "failed"})


class User(TypedDict):
    user_id: str
    email: str
    name: str | None
    is_platform_admin: bool
    created_at: str


class Tenant(TypedDict):
    tenant_id: str
    name: str
    created_at: str


class Grant(TypedDict):
    token: str
    expires_at: str
    user: User
    tenant: Tenant


class Me(TypedDict):
    user: User
    tenant: Tenant
    roles: list[str]
    scopes: list[str]


class ApiKey(TypedDict):
    api_key_id: str
    name: str
    prefix: str
    scopes: list[str]
    dataset_access_mode: str
    dataset_ids: list[str]
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class NewApiKey(ApiKey):
    key: str  # the full secret, shown once


class Dataset(TypedDict):
    dataset_id: str
    tenant_id: str
    name: str
    description: str | None
    source_modality: str
    monetization_mode: str
    pricing_model: str
    visibility: str
    status: str
    object_count: int
    active_object_count: int
    total_bytes: int
    total_datapoint_count: int
    created_at: str
    updated_at: str
    last_ingest_at: str | None


class PartTarget(TypedDict):
    part_number: int
    upload_url: str


class UploadTarget(TypedDict, total=False):
    upload_id: str
    object_id: str
    blob_id: str
    review_state: str
    upload_strategy: Literal["single_part", "multipart"]
    upload_url: str | None
    expires_at: str
    part_size_bytes: int  # multipart only
    parts: list[PartTarget]  # multipart only


class Confirmed(TypedDict):
    object_id: str
    status: str
    review_state: str
    checksum_sha256: str


class ArtifactSummary(TypedDict):
    plain_text: bool
    ocr_blocks: bool
    chunk_embeddings: bool


class Object(TypedDict):
    object_id: str
    tenant_id: str
    dataset_id: str
    original_filename: str
    mime_type: str
    size_bytes: int
    checksum_sha256: str | None
    status: str
    review_state: str
    uploaded_at: str | None
    artifact_summary: ArtifactSummary
    latest_job_id: str | None
    failure_reason: str | None
    created_at: str


class DownloadUrl(TypedDict):
    download_url: str
    expires_at: str


class SearchResult(TypedDict):
    result_id: str
    rank: int
    score: float
    dataset_id: str
    object_id: str
    chunk_index: int
    snippet: str
    highlights: list[list[int]]
    original_filename: str
    mime_type: str


class SearchPage(TypedDict):
    search_id: str
    results: list[SearchResult]
    next_cursor: str | None
    has_more: bool


class Charge(TypedDict):
    amount_micros: int
    currency: str


class Access(TypedDict):
    access_id: str
    object_id: str
    dataset_id: str
    search_id: str | None
    result_id: str | None
    download_url: str
    expires_at: str
    charge: Charge
    original_filename: str
    mime_type: str
    size_bytes: int
    checksum_sha256: str | None
    created_at: str


class ReviewDecision(TypedDict, total=False):
    object_id: str
    review_state: str
    job_id: str  # approve
    reason: str | None  # reject


class Job(TypedDict, total=False):
    job_id: str
    type: str
    status: str
    stage: str | None
    dataset_id: str
    object_id: str
    import_id: str
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class ImportUrl(TypedDict):
    upload_url: str
    http_method: str
    content_type: str
    import_id: str
    expires_at: str


class RecordError(TypedDict):
    line: int
    field: str | None
    message: str


class Import(TypedDict, total=False):
    import_id: str
    dataset_id: str
    filename: str
    status: str
    accepted_count: int
    rejected_count: int
    errors: list[RecordError]
    reason: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its items, where the next one starts, whether there is one."""

    items: list[T]
    next_cursor: str | None
    has_more: bool
    total: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def page_from(body: dict[str, Any]) -> Page[Any]:
    """Build a :class:`Page` from a list body ``{"<items>": [...], next_cursor, has_more}``.

    The items key is the one list in the body, so every list endpoint (``datasets``,
    ``objects``, ``imports``, ``datapoints``, …) is read the same way."""
    lists = [v for k, v in body.items() if isinstance(v, list) and k not in ("next_cursor", "has_more")]
    if len(lists) != 1:
        raise ValueError(f"not a list body: keys {sorted(body)}")
    total = body.get("total")
    return Page(lists[0], body.get("next_cursor"), bool(body.get("has_more")), total if isinstance(total, int) else None, body)
