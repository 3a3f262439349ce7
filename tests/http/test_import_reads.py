"""Reading an import while it runs: every answer is one consistent state of the row."""

from __future__ import annotations

import pytest
import trio

from tests.conftest import create_dataset, make_config
from tests.http.test_imports import SCHEMA, jsonl, start_import

TERMINAL = {"complete", "partial", "failed", "pending_schema"}


@pytest.fixture(name="cfg")
def _cfg(tmp_path):
    return make_config(tmp_path / "data", **{"imports.batch_records": 25})


async def test_reads_during_an_import_never_mix_two_states(client, alice, service):
    ds = await create_dataset(client, alice.headers, schema=SCHEMA)
    records = [{"name": f"n{i}", "age": i} if i % 50 else {"name": "bad"} for i in range(1, 1501)]
    target = await start_import(client, alice.headers, ds["dataset_id"], jsonl(*records))
    seen: list[dict] = []

    async def poll(path: str) -> None:
        while True:
            imp = (await client.get(path, headers=alice.headers)).json()["data"]
            seen.append(imp)
            if imp["status"] in TERMINAL:
                return

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll, f"/v1/imports/{target['import_id']}")
            nursery.start_soon(poll, f"/v1/datasets/{ds['dataset_id']}/imports/{target['import_id']}")
    for imp in seen:
        if imp["status"] in TERMINAL:
            assert imp["finished_at"] is not None and imp["reason"] is not None or imp["status"] == "complete", imp
        else:
            assert imp["finished_at"] is None and imp["reason"] is None, imp
        if imp["status"] in ("queued", "uninitialised"):
            assert imp["started_at"] is None and imp["accepted_count"] == 0, imp
    final = seen[-1]
    assert final["status"] == "partial" and final["accepted_count"] == 1470 and final["rejected_count"] == 30
    assert len(seen) > 2
