"""Pages and the iterators that follow ``next_cursor`` until ``has_more`` is false."""

from __future__ import annotations

from engine.client import Page


async def test_iterator_follows_cursors_across_pages(api, recorder):
    ids = [(await api.create_dataset(f"d{i}"))["dataset_id"] for i in range(5)]
    recorder.seen.clear()
    seen = [d["dataset_id"] async for d in api.iter_datasets(page_size=2)]
    assert seen == list(reversed(ids))  # newest first, each once
    gets = [p for m, p, _ in recorder.seen if m == "GET"]
    assert gets == ["/v1/datasets"] * 3


async def test_a_single_page(api):
    for i in range(3):
        await api.create_dataset(f"d{i}")
    page = await api.list_datasets(limit=2)
    assert isinstance(page, Page) and len(page.items) == 2 and page.has_more and page.next_cursor and page.total == 3
    rest = await api.list_datasets(limit=2, cursor=page.next_cursor)
    assert len(rest.items) == 1 and not rest.has_more and rest.next_cursor is None


async def test_filters_go_with_every_page(api):
    a = await api.create_dataset("listed one", visibility="listed")
    await api.create_dataset("private one")
    b = await api.create_dataset("listed two", visibility="listed")
    got = [d["dataset_id"] async for d in api.iter_datasets(visibility="listed", page_size=1)]
    assert got == [b["dataset_id"], a["dataset_id"]]


async def test_breaking_out_early_fetches_no_more_pages(api, recorder):
    for i in range(4):
        await api.create_dataset(f"d{i}")
    recorder.seen.clear()
    async for _ in api.iter_datasets(page_size=2):
        break
    assert len(recorder.seen) == 1
