"""The blocking ``Client``: the async client's methods on a private trio loop."""

from __future__ import annotations

import pytest
import trio

from engine.client import Client
from engine.client.errors import NotFound
from tests.client.conftest import FAST
from tests.conftest import signup


async def test_sync_client_logs_in_calls_iterates_and_raises(service, client):
    account = await signup(client, password="sync password")

    def work():
        with Client(service.url, retry=FAST) as api:
            grant = api.login(account.email, "sync password")
            assert api.token == grant["token"]
            created = [api.create_dataset(f"s{i}")["dataset_id"] for i in range(3)]
            listed = [d["dataset_id"] for d in api.iter_datasets(page_size=2)]
            with pytest.raises(NotFound) as info:
                api.get_dataset("dset_missing")
            return created, listed, api.me(), info.value

    created, listed, me, error = await trio.to_thread.run_sync(work)
    assert listed == list(reversed(created))
    assert me["user"]["email"] == account.email
    assert error.status == 404 and error.request_id.startswith("req_")


async def test_sync_iterator_closed_early(service, alice):
    def work():
        with Client(service.url, token=alice.token, retry=FAST) as api:
            for i in range(3):
                api.create_dataset(f"d{i}")
            it = api.iter_datasets(page_size=1)
            first = next(it)
            it.close()
            return first, api.list_datasets(limit=1).total

    first, total = await trio.to_thread.run_sync(work)
    assert first["name"] == "d2" and total == 3
