"""Helpers for marketplace tests: a provider's corpus driven through upload, review and the pipeline."""

from __future__ import annotations

from typing import Any

import httpx

from tests.http.uploads_helpers import upload

ADMIN = {"admin.bootstrap_email": "root@example.com", "admin.bootstrap_password": "admin password"}


async def admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    r = await client.post("/v1/auth/login", json={"email": "root@example.com", "password": "admin password"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['data']['token']}"}


async def publish(client: httpx.AsyncClient, service: Any, admin: dict[str, str], headers: dict[str, str], dataset_id: str,
                  docs: dict[str, str]) -> dict[str, str]:
    """Upload, approve and index every document; ``{filename: object_id}`` once all are active."""
    ids = {}
    for name, text in docs.items():
        up = await upload(client, headers, dataset_id, text.encode(), filename=name)
        r = await client.post(f"/v1/admin/staged-objects/{up['object_id']}/approve", headers=admin)
        assert r.status_code == 200, r.text
        ids[name] = up["object_id"]
    await service.services.pipeline.wait_idle()
    for name, object_id in ids.items():
        obj = (await client.get(f"/v1/objects/{object_id}", headers=headers)).json()["data"]
        assert obj["status"] == "active", (name, obj)
    return ids


async def search(client: httpx.AsyncClient, headers: dict[str, str], query: str, **body: Any) -> httpx.Response:
    return await client.post("/v1/search", headers=headers, json={"query": query, **body})


async def found(client: httpx.AsyncClient, headers: dict[str, str], query: str, **body: Any) -> list[str]:
    """The filenames of a search's results, in rank order."""
    r = await search(client, headers, query, **body)
    assert r.status_code == 200, r.text
    return [res["original_filename"] for res in r.json()["data"]["results"]]
