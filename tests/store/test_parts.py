"""The parts of an upload as the store lists them (on whichever store the suite runs)."""

from __future__ import annotations

import random
from datetime import timedelta

from engine.ids import new_id
from engine.objects import MiB
from engine.store.records import ObjectRecord, Upload, UploadPart
from engine.store.sqlite.objects import QUICK_PARTS
from tests.actors.conftest import open_engine, tenant


async def _multipart(svc, parts: int) -> Upload:
    owner = await tenant(svc)
    ds = (await svc.datasets.create(owner, {"name": "parts"})).id
    now = svc.now()
    obj = ObjectRecord(
        id=new_id("obj"), tenant_id=owner.tenant_id, dataset_id=ds, blob_id=new_id("blob"), upload_id=new_id("upl"),
        original_filename="big.bin", mime_type="text/plain", size_bytes=parts * 5 * MiB, declared_sha256=None,
        checksum_sha256=None, status="pending_upload", review_state="staged", created_at=now, updated_at=now,
    )
    upload = Upload(obj.upload_id, obj.id, obj.tenant_id, ds, "multipart", 5 * MiB, parts, "pending",
                    now + timedelta(hours=1), now)
    await svc.store.create_object_upload(obj, upload)
    return upload


async def _record(svc, upload: Upload, numbers: list[int]) -> None:
    for n in numbers:
        accepted, _ = await svc.store.record_part(UploadPart(upload.id, n, f"{n}.f", 5 * MiB, f"{n:064x}", svc.now()))
        assert accepted


async def test_many_parts_are_all_listed_in_order(tmp_path):
    count = QUICK_PARTS * 2 + 3  # past the quick read's limit
    async with open_engine(tmp_path / "d") as svc:
        upload = await _multipart(svc, count)
        numbers = list(range(1, count + 1))
        random.Random(7).shuffle(numbers)
        await _record(svc, upload, numbers)
        listed = await svc.store.list_parts(upload.id)
        assert [p.part_number for p in listed] == list(range(1, count + 1))
        assert {p.file_name for p in listed} == {f"{n}.f" for n in range(1, count + 1)}


async def test_exactly_the_quick_limit_and_a_few_parts(tmp_path):
    async with open_engine(tmp_path / "d") as svc:
        for count in (QUICK_PARTS, QUICK_PARTS + 1, 3):
            upload = await _multipart(svc, count)
            await _record(svc, upload, list(range(count, 0, -1)))
            assert [p.part_number for p in await svc.store.list_parts(upload.id)] == list(range(1, count + 1))
