"""Record imports (V4) through the client: schema, upload URL + PUT, waiting, datapoints."""

from __future__ import annotations

import json

SCHEMA = {"type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}, "required": ["sku", "qty"]}


async def test_import_file_wait_and_read_datapoints(api, tmp_path):
    ds = await api.create_dataset("stock", source_modality="tabular")
    await api.set_schema(ds["dataset_id"], SCHEMA)
    rows = [{"sku": f"A{i}", "qty": i} for i in range(7)]
    (tmp_path / "stock.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    target = await api.import_file(ds["dataset_id"], tmp_path / "stock.jsonl")
    assert target["import_id"].startswith("imp_") and target["content_type"] == "application/x-ndjson"
    updates: list[str] = []
    done = await api.wait_import(target["import_id"], poll_seconds=0.05, timeout=30, on_update=lambda i: updates.append(i["status"]))
    assert done["status"] == "complete" and done["accepted_count"] == 7 and updates[-1] == "complete"

    same = await api.get_import(target["import_id"], dataset_id=ds["dataset_id"])
    assert same["import_id"] == target["import_id"]
    assert [i["import_id"] async for i in api.iter_imports(ds["dataset_id"])] == [target["import_id"]]
    points = [p async for p in api.iter_datapoints(ds["dataset_id"], page_size=3)]
    assert len(points) == 7
    assert (await api.get_dataset(ds["dataset_id"]))["total_datapoint_count"] == 7


async def test_schema_on_create(api, tmp_path):
    ds = await api.create_dataset("with schema", source_modality="tabular", schema=SCHEMA)
    (tmp_path / "s.csv").write_text("sku,qty\nA,1\nB,x\n")
    target = await api.import_file(ds["dataset_id"], tmp_path / "s.csv")
    done = await api.wait_import(target["import_id"], poll_seconds=0.05, timeout=30)
    assert done["status"] == "partial" and done["accepted_count"] == 1 and done["errors"][0]["line"] == 3
