"""The async client (trio, through ``httpx.AsyncClient``): one method per endpoint of API.md.

Every call goes through :meth:`AsyncClient.send`, which adds the credentials, puts an
``Idempotency-Key`` on every POST (the same key on each retry, so the server replays the
first answer instead of doing the work twice), retries what is safe to retry with
exponential backoff (:mod:`engine.client.retry`), and turns an error envelope into a typed
:class:`~engine.client.errors.ApiError`. Methods return the envelope's ``data``; list
methods return a :class:`~engine.client.models.Page` and have an ``iter_*`` twin that
follows ``next_cursor`` until ``has_more`` is false.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import trio

from engine.client import models as m
from engine.client.errors import ConnectionFailed, error_from_response
from engine.client.retry import RetryPolicy, retry_after, retryable_exception, retryable_response

DEFAULT_URL = "http://127.0.0.1:8080"
USER_AGENT = "ipto-client/0.1"
Content = bytes | Callable[[], AsyncIterable[bytes]]


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if v is not None}


class AsyncClient:
    """``async with AsyncClient(url, token=…) as api: await api.get_dataset("dset_…")``.

    Credentials: a session ``token`` (from :meth:`login`) or an ``api_key``. ``transport``
    replaces httpx's (tests use it to drop connections)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.api_key = api_key
        self.retry = retry or RetryPolicy()
        self.http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport, headers={"User-Agent": USER_AGENT})

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- transport --------------------------------------------------------------------
    def auth_headers(self) -> dict[str, str]:
        if self.api_key:
            return {"X-API-Key": self.api_key}
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        return {}

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: Content | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        idempotency_key: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> httpx.Response:
        """One request with retries; returns a 2xx response (read) or raises.

        ``content`` may be a factory of an async byte stream, called again for each try.
        Presigned URLs are absolute and are sent with ``auth=False``."""
        method = method.upper()
        policy = retry or self.retry
        sent_headers = {**(self.auth_headers() if auth else {}), **(headers or {})}
        if method == "POST":
            sent_headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        attempt = 0
        while True:
            attempt += 1
            body = content() if callable(content) else content
            try:
                # params=None, not {}: httpx would drop a presigned URL's own query string.
                response = await self.http.request(
                    method, url, params=_clean(params) or None, json=json, content=body, headers=sent_headers
                )
            except httpx.TransportError as exc:
                if attempt < policy.attempts and retryable_exception(method, exc):
                    await trio.sleep(policy.delay(attempt))
                    continue
                raise ConnectionFailed(str(httpx.URL(self.url).join(url)), exc) from exc
            if response.is_success:
                return response
            error = error_from_response(response)
            if attempt < policy.attempts and retryable_response(method, response, error.code):
                await trio.sleep(policy.delay(attempt, retry_after(response)))
                continue
            raise error

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """An API call; returns the envelope's ``data``."""
        response = await self.send(method, path, params=params, json=json, idempotency_key=idempotency_key)
        return response.json()["data"]

    async def page(self, path: str, params: Mapping[str, Any] | None = None) -> m.Page[Any]:
        return m.page_from(await self.call("GET", path, params=params))

    async def iterate(self, path: str, params: Mapping[str, Any] | None = None, page_size: int = 100) -> AsyncIterator[Any]:
        """Every item of a list, page after page (``next_cursor`` until ``has_more`` is false)."""
        cursor: str | None = None
        while True:
            page = await self.page(path, {**(params or {}), "limit": page_size, "cursor": cursor})
            for item in page.items:
                yield item
            if not page.has_more or not page.next_cursor:
                return
            cursor = page.next_cursor

    async def health(self) -> dict[str, Any]:
        """``GET /v1/health`` (no credentials): status of the service, its store and blobs."""
        response = await self.send("GET", "/v1/health", auth=False)
        return response.json()["data"]

    # -- identity ---------------------------------------------------------------------
    async def signup(self, email: str, password: str, name: str | None = None, tenant_name: str | None = None) -> m.Grant:
        """Create an account and its tenant; the client then uses the new session."""
        body = _clean({"email": email, "password": password, "name": name, "tenant_name": tenant_name})
        grant: m.Grant = await self.call("POST", "/v1/auth/signup", json=body)
        self.token, self.api_key = grant["token"], None
        return grant

    async def login(self, email: str, password: str) -> m.Grant:
        """Open a session; the client then uses its token."""
        grant: m.Grant = await self.call("POST", "/v1/auth/login", json={"email": email, "password": password})
        self.token, self.api_key = grant["token"], None
        return grant

    async def logout(self) -> None:
        await self.call("POST", "/v1/auth/logout")
        self.token = None

    async def me(self) -> m.Me:
        return await self.call("GET", "/v1/me")

    # -- API keys -----------------------------------------------------------------------
    async def create_api_key(
        self, name: str, scopes: list[str], dataset_access_mode: str | None = None, dataset_ids: list[str] | None = None
    ) -> m.NewApiKey:
        body = _clean({"name": name, "scopes": scopes, "dataset_access_mode": dataset_access_mode, "dataset_ids": dataset_ids})
        return await self.call("POST", "/v1/api-keys", json=body)

    async def list_api_keys(self, limit: int | None = None, cursor: str | None = None) -> m.Page[m.ApiKey]:
        return await self.page("/v1/api-keys", {"limit": limit, "cursor": cursor})

    def iter_api_keys(self, page_size: int = 100) -> AsyncIterator[m.ApiKey]:
        return self.iterate("/v1/api-keys", page_size=page_size)

    async def get_api_key(self, api_key_id: str) -> m.ApiKey:
        return await self.call("GET", f"/v1/api-keys/{_q(api_key_id)}")

    async def update_api_key(self, api_key_id: str, **fields: Any) -> m.ApiKey:
        """PATCH ``name``, ``dataset_access_mode``, ``dataset_ids``."""
        return await self.call("PATCH", f"/v1/api-keys/{_q(api_key_id)}", json=fields)

    async def revoke_api_key(self, api_key_id: str) -> m.ApiKey:
        return await self.call("DELETE", f"/v1/api-keys/{_q(api_key_id)}")

    # -- datasets -----------------------------------------------------------------------
    async def create_dataset(self, name: str, *, idempotency_key: str | None = None, **fields: Any) -> m.Dataset:
        """``description``, ``source_modality``, ``monetization_mode``, ``pricing_model``,
        ``visibility``, ``schema`` (a JSON Schema for record imports) are optional."""
        body = {"name": name, **_clean(fields)}
        return await self.call("POST", "/v1/datasets", json=body, idempotency_key=idempotency_key)

    async def list_datasets(
        self, status: str | None = None, visibility: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> m.Page[m.Dataset]:
        return await self.page("/v1/datasets", {"status": status, "visibility": visibility, "limit": limit, "cursor": cursor})

    def iter_datasets(self, status: str | None = None, visibility: str | None = None, page_size: int = 100) -> AsyncIterator[m.Dataset]:
        return self.iterate("/v1/datasets", {"status": status, "visibility": visibility}, page_size)

    async def get_dataset(self, dataset_id: str) -> m.Dataset:
        return await self.call("GET", f"/v1/datasets/{_q(dataset_id)}")

    async def update_dataset(self, dataset_id: str, **fields: Any) -> m.Dataset:
        """PATCH any of the create fields, or ``status`` (``paused`` / ``archived`` / ``active``)."""
        return await self.call("PATCH", f"/v1/datasets/{_q(dataset_id)}", json=fields)

    async def update_datasets(self, dataset_ids: Sequence[str], **change: Any) -> list[dict[str, Any]]:
        """``PATCH /v1/datasets``: one change to up to 1,000 datasets; each item stands alone:
        ``[{index, dataset_id, ok, data | error}]``."""
        body = await self.call("PATCH", "/v1/datasets", json={"dataset_ids": list(dataset_ids), "set": change})
        return list(body["results"])

    async def suspend_dataset(self, dataset_id: str) -> m.Dataset:
        """Platform admins: suspend any tenant's dataset."""
        return await self.call("POST", f"/v1/admin/datasets/{_q(dataset_id)}/suspend")

    async def unsuspend_dataset(self, dataset_id: str) -> m.Dataset:
        """Platform admins: lift a suspension (the dataset lands on the state its content warrants)."""
        return await self.call("POST", f"/v1/admin/datasets/{_q(dataset_id)}/unsuspend")

    async def delete_dataset(self, dataset_id: str) -> None:
        await self.call("DELETE", f"/v1/datasets/{_q(dataset_id)}")

    async def set_schema(self, dataset_id: str, schema: dict[str, Any]) -> Any:
        """``PUT /v1/datasets/{id}/schema`` with body ``{"schema": …}`` (record imports, V4)."""
        return await self.call("PUT", f"/v1/datasets/{_q(dataset_id)}/schema", json={"schema": schema})

    async def catalog(self, limit: int | None = None, cursor: str | None = None) -> m.Page[dict[str, Any]]:
        return await self.page("/v1/catalog/datasets", {"limit": limit, "cursor": cursor})

    def iter_catalog(self, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        return self.iterate("/v1/catalog/datasets", page_size=page_size)

    # -- uploads and objects -------------------------------------------------------------
    async def initiate_upload(
        self,
        dataset_id: str,
        filename: str,
        content_type: str,
        size_bytes: int,
        checksum_sha256: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> m.UploadTarget:
        """Presigned URL(s) for a new object. Re-sent with the same ``idempotency_key``, it
        answers the same object and upload (with fresh URLs once the old ones expired)."""
        body = _clean({"filename": filename, "content_type": content_type, "size_bytes": size_bytes,
                       "checksum_sha256": checksum_sha256})
        path = f"/v1/datasets/{_q(dataset_id)}/objects/upload"
        return await self.call("POST", path, json=body, idempotency_key=idempotency_key)

    async def create_upload(
        self,
        dataset_id: str,
        filename: str,
        content_type: str,
        size_bytes: int,
        checksum_sha256: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> m.UploadTarget:
        """The same as :meth:`initiate_upload` through ``POST /v1/uploads`` (dataset in the body)."""
        body = _clean({"dataset_id": dataset_id, "filename": filename, "content_type": content_type,
                       "size_bytes": size_bytes, "checksum_sha256": checksum_sha256})
        return await self.call("POST", "/v1/uploads", json=body, idempotency_key=idempotency_key)

    async def put_presigned(self, url: str, content: Content, size: int, content_type: str | None = None) -> str:
        """PUT raw bytes to a presigned URL (no credentials); returns the ``ETag``."""
        headers = {"Content-Length": str(size)}
        if content_type:
            headers["Content-Type"] = content_type
        response = await self.send("PUT", url, content=content, headers=headers, auth=False)
        return response.headers.get("ETag", "")

    async def confirm_upload(self, object_id: str) -> m.Confirmed:
        """Confirm a single-part upload."""
        return await self.call("POST", f"/v1/objects/{_q(object_id)}/confirm")

    async def complete_upload(self, upload_id: str, parts: list[dict[str, Any]]) -> m.Confirmed:
        """Complete a multipart upload: ``parts`` = ``[{part_number, etag}, …]``."""
        path = f"/v1/uploads/{_q(upload_id)}/complete"
        return await self.call("POST", path, json={"parts": parts})

    async def get_object(self, object_id: str) -> m.Object:
        return await self.call("GET", f"/v1/objects/{_q(object_id)}")

    async def list_objects(
        self, dataset_id: str, status: str | None = None, review_state: str | None = None,
        limit: int | None = None, cursor: str | None = None, checksum_sha256: str | None = None,
    ) -> m.Page[m.Object]:
        """A page of the dataset's objects; ``checksum_sha256`` keeps those whose verified bytes have it."""
        params = {"status": status, "review_state": review_state, "limit": limit, "cursor": cursor, "checksum_sha256": checksum_sha256}
        return await self.page(f"/v1/datasets/{_q(dataset_id)}/objects", params)

    def iter_objects(
        self, dataset_id: str, status: str | None = None, review_state: str | None = None, page_size: int = 100,
        checksum_sha256: str | None = None,
    ) -> AsyncIterator[m.Object]:
        params = {"status": status, "review_state": review_state, "checksum_sha256": checksum_sha256}
        return self.iterate(f"/v1/datasets/{_q(dataset_id)}/objects", params, page_size)

    async def delete_object(self, object_id: str) -> m.Object:
        return await self.call("DELETE", f"/v1/objects/{_q(object_id)}")

    async def initiate_uploads(
        self, dataset_id: str, files: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> list[dict[str, Any]]:
        """Initiate up to 1,000 uploads in one request (``files``: ``{filename, content_type,
        size_bytes, checksum_sha256?}`` each): ``[{index, ok, upload | error}]``. Re-sent with
        the same ``idempotency_key`` and files, it answers the same objects (fresh URLs once
        the old ones expired)."""
        path = f"/v1/datasets/{_q(dataset_id)}/objects/upload/batch"
        body = await self.call("POST", path, json={"files": [_clean(f) for f in files]}, idempotency_key=idempotency_key)
        return list(body["results"])

    async def confirm_uploads(self, object_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Confirm up to 1,000 uploads (each verified on its own): ``[{index, object_id, ok, data | error}]``."""
        body = await self.call("POST", "/v1/objects/confirm/batch", json={"object_ids": list(object_ids)})
        return list(body["results"])

    async def delete_objects(self, object_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Delete up to 1,000 objects: ``[{index, object_id, ok, data | error}]``."""
        body = await self.call("POST", "/v1/objects/delete/batch", json={"object_ids": list(object_ids)})
        return list(body["results"])

    async def download_url(self, object_id: str) -> m.DownloadUrl:
        return await self.call("GET", f"/v1/objects/{_q(object_id)}/download-url")

    async def download(self, object_id: str, dest: Path) -> Path:
        """Stream an object's bytes to ``dest`` (a file, or a directory to hold the file under
        its original name), checking its SHA-256; returns the file written."""
        from engine.client.transfer import download_object

        return await download_object(self, object_id, dest)

    # -- search and retrieval (buyers) ----------------------------------------------------
    async def search(
        self, query: str, *, dataset_ids: list[str] | None = None, mode: str | None = None, limit: int | None = None,
        cursor: str | None = None,
    ) -> m.SearchPage:
        """One page of ``POST /v1/search`` (``mode``: hybrid, lexical or vector)."""
        body = {"query": query, "dataset_ids": dataset_ids, "mode": mode, "limit": limit, "cursor": cursor}
        return await self.call("POST", "/v1/search", json={k: v for k, v in body.items() if v is not None})

    async def iter_search(
        self, query: str, *, dataset_ids: list[str] | None = None, mode: str | None = None, page_size: int = 100,
        max_results: int | None = None,
    ) -> AsyncIterator[m.SearchResult]:
        """Every result of a search, page after page (each result carries its ``search_id``)."""
        cursor: str | None = None
        seen = 0
        while True:
            page = await self.search(query, dataset_ids=dataset_ids, mode=mode, limit=page_size, cursor=cursor)
            for result in page["results"]:
                yield {**result, "search_id": page["search_id"]}  # type: ignore[typeddict-unknown-key]
                seen += 1
                if max_results is not None and seen >= max_results:
                    return
            if not page["has_more"] or not page["next_cursor"]:
                return
            cursor = page["next_cursor"]

    async def access(
        self, object_id: str, *, search_id: str | None = None, result_id: str | None = None, idempotency_key: str | None = None,
    ) -> m.Access:
        """A retrieval event (charged by the dataset's price) and its download URL (15 min).
        Retries reuse one Idempotency-Key, so a retried access is one access, one charge."""
        body = {k: v for k, v in {"search_id": search_id, "result_id": result_id}.items() if v is not None}
        return await self.call("POST", f"/v1/objects/{_q(object_id)}/access", json=body or None, idempotency_key=idempotency_key)

    async def retrieve(self, object_id: str, dest: Path, **access: Any) -> tuple[m.Access, Path]:
        """:meth:`access`, then the bytes streamed to ``dest`` and checked (SHA-256)."""
        from engine.client.transfer import retrieve_object

        granted, out = await retrieve_object(self, object_id, dest, **access)
        return granted, out

    async def create_grant(self, dataset_id: str, tenant_id: str) -> dict[str, Any]:
        return await self.call("POST", f"/v1/datasets/{_q(dataset_id)}/grants", json={"tenant_id": tenant_id})

    async def list_grants(self, dataset_id: str, limit: int | None = None, cursor: str | None = None) -> m.Page[dict[str, Any]]:
        return await self.page(f"/v1/datasets/{_q(dataset_id)}/grants", {"limit": limit, "cursor": cursor})

    async def delete_grant(self, dataset_id: str, grant_id: str) -> None:
        await self.call("DELETE", f"/v1/datasets/{_q(dataset_id)}/grants/{_q(grant_id)}")

    async def upload_file(self, dataset_id: str, path: Path, **options: Any) -> Any:
        """Initiate, upload and confirm one file (see :func:`engine.client.transfer.upload_file`)."""
        from engine.client.transfer import upload_file

        return await upload_file(self, dataset_id, path, **options)

    # -- review (admin:*) and jobs ------------------------------------------------------------
    async def list_staged(
        self, review_state: str | None = None, tenant_id: str | None = None, limit: int | None = None, cursor: str | None = None,
        *, dataset_id: str | None = None, modality: str | None = None, uploaded_from: str | None = None,
        uploaded_to: str | None = None, order: str | None = None,
    ) -> m.Page[m.Object]:
        """A page of the review queue. ``order="oldest"`` pages oldest upload first and puts a
        ``poll_cursor`` in ``Page.raw``: ask with it later to get what arrived since."""
        params = {"review_state": review_state, "tenant_id": tenant_id, "dataset_id": dataset_id, "modality": modality,
                  "uploaded_from": uploaded_from, "uploaded_to": uploaded_to, "order": order, "limit": limit, "cursor": cursor}
        return await self.page("/v1/admin/staged-objects", params)

    def iter_staged(
        self, review_state: str | None = None, tenant_id: str | None = None, page_size: int = 100,
        *, dataset_id: str | None = None, modality: str | None = None, uploaded_from: str | None = None,
        uploaded_to: str | None = None, order: str | None = None,
    ) -> AsyncIterator[m.Object]:
        params = {"review_state": review_state, "tenant_id": tenant_id, "dataset_id": dataset_id, "modality": modality,
                  "uploaded_from": uploaded_from, "uploaded_to": uploaded_to, "order": order}
        return self.iterate("/v1/admin/staged-objects", params, page_size)

    async def preview_staged(self, object_id: str) -> dict[str, Any]:
        """What a staged object's bytes show (text, PDF pages, image size); changes nothing."""
        return await self.call("GET", f"/v1/admin/staged-objects/{_q(object_id)}/preview")

    async def approve_many(self, object_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Approve up to 100 objects in one call: ``[{index, object_id, ok, data | error}]``."""
        body = await self.call("POST", "/v1/admin/staged-objects/approve/batch", json={"object_ids": list(object_ids)})
        return list(body["results"])

    async def get_staged(self, object_id: str) -> m.Object:
        """Open a staged object for review (it moves to ``under_review``)."""
        return await self.call("GET", f"/v1/admin/staged-objects/{_q(object_id)}")

    async def claim(self, object_id: str) -> m.ReviewDecision:
        return await self.call("POST", f"/v1/admin/staged-objects/{_q(object_id)}/claim")

    async def approve(self, object_id: str) -> m.ReviewDecision:
        return await self.call("POST", f"/v1/admin/staged-objects/{_q(object_id)}/approve")

    async def reject(self, object_id: str, reason: str | None = None) -> m.ReviewDecision:
        body = {"reason": reason} if reason is not None else None
        return await self.call("POST", f"/v1/admin/staged-objects/{_q(object_id)}/reject", json=body)

    async def get_job(self, job_id: str) -> m.Job:
        return await self.call("GET", f"/v1/jobs/{_q(job_id)}")

    async def wait_job(self, job_id: str, *, poll_seconds: float = 1.0, timeout: float | None = None) -> m.Job:
        """Poll a job until it has succeeded or failed."""
        with trio.fail_after(timeout) if timeout else trio.CancelScope():
            while (job := await self.get_job(job_id))["status"] not in m.JOB_TERMINAL:
                await trio.sleep(poll_seconds)
        return job

    # -- record imports (V4) --------------------------------------------------------------------
    async def import_upload_url(self, dataset_id: str, filename: str) -> m.ImportUrl:
        """A presigned PUT URL for a ``.jsonl``/``.csv`` record file; creates the import job."""
        return await self.call("GET", f"/v1/datasets/{_q(dataset_id)}/upload-url/{_q(filename)}")

    async def import_file(self, dataset_id: str, path: Path) -> m.ImportUrl:
        """Request an import URL for ``path`` and PUT the file to it; returns the URL answer
        (its ``import_id`` names the job to poll)."""
        from engine.client.transfer import file_stream

        target = await self.import_upload_url(dataset_id, path.name)
        size = path.stat().st_size
        await self.put_presigned(target["upload_url"], lambda: file_stream(path, 0, size), size, target["content_type"])
        return target

    async def get_import(self, import_id: str, dataset_id: str | None = None) -> m.Import:
        if dataset_id is not None:
            return await self.call("GET", f"/v1/datasets/{_q(dataset_id)}/imports/{_q(import_id)}")
        return await self.call("GET", f"/v1/imports/{_q(import_id)}")

    async def wait_import(
        self,
        import_id: str,
        *,
        poll_seconds: float = 1.0,
        timeout: float | None = None,
        on_update: Callable[[m.Import], None] | None = None,
    ) -> m.Import:
        """Poll an import until ``complete``, ``partial``, ``failed`` or ``pending_schema``."""
        with trio.fail_after(timeout) if timeout else trio.CancelScope():
            while True:
                imp = await self.get_import(import_id)
                if on_update is not None:
                    on_update(imp)
                if imp["status"] in m.IMPORT_TERMINAL:
                    return imp
                await trio.sleep(poll_seconds)

    async def list_imports(self, dataset_id: str, limit: int | None = None, cursor: str | None = None) -> m.Page[m.Import]:
        return await self.page(f"/v1/datasets/{_q(dataset_id)}/imports", {"limit": limit, "cursor": cursor})

    def iter_imports(self, dataset_id: str, page_size: int = 100) -> AsyncIterator[m.Import]:
        return self.iterate(f"/v1/datasets/{_q(dataset_id)}/imports", page_size=page_size)

    async def list_datapoints(self, dataset_id: str, limit: int | None = None, cursor: str | None = None) -> m.Page[dict[str, Any]]:
        return await self.page(f"/v1/datasets/{_q(dataset_id)}/datapoints", {"limit": limit, "cursor": cursor})

    def iter_datapoints(self, dataset_id: str, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        return self.iterate(f"/v1/datasets/{_q(dataset_id)}/datapoints", page_size=page_size)
