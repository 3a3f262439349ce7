"""Helpers for upload tests: initiate, PUT, confirm through the real HTTP API."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

MiB = 1024 * 1024
# Small multipart settings so tests exercise several parts with little data.
MULTIPART = {"uploads.multipart_threshold_bytes": 6 * MiB, "uploads.part_size_bytes": 5 * MiB}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def initiate(client: httpx.AsyncClient, headers: dict[str, str], dataset_id: str, data: bytes, **fields: Any) -> httpx.Response:
    body = {"filename": "invoice-0425.txt", "content_type": "text/plain", "size_bytes": len(data), **fields}
    return await client.post(f"/v1/datasets/{dataset_id}/objects/upload", headers=headers, json=body)


async def upload(client: httpx.AsyncClient, headers: dict[str, str], dataset_id: str, data: bytes, **fields: Any) -> dict[str, Any]:
    """Initiate, PUT and confirm a single-part object; return the initiate answer."""
    r = await initiate(client, headers, dataset_id, data, checksum_sha256=sha(data), **fields)
    assert r.status_code == 201, r.text
    up = r.json()["data"]
    put = await client.put(up["upload_url"], content=data)
    assert put.status_code == 200, put.text
    confirmed = await client.post(f"/v1/objects/{up['object_id']}/confirm", headers=headers)
    assert confirmed.status_code == 200, confirmed.text
    return up  # type: ignore[no-any-return]


async def put_parts(client: httpx.AsyncClient, up: dict[str, Any], data: bytes, order: list[int] | None = None) -> list[dict[str, Any]]:
    size = up["part_size_bytes"]
    parts = {p["part_number"]: p["upload_url"] for p in up["parts"]}
    etags = []
    for n in order or sorted(parts):
        r = await client.put(parts[n], content=data[(n - 1) * size : n * size])
        assert r.status_code == 200, r.text
        etags.append({"part_number": n, "etag": r.headers["ETag"]})
    return etags
