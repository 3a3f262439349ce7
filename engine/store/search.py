"""What both stores' search indexes share: chunk ids and the rows a search reads back."""

from __future__ import annotations

from dataclasses import dataclass

# A chunk's id is (dataset seq << DATASET_SHIFT) | n: the dataset is in the id itself, so a
# search limited to some datasets filters on the id without reading a row (2^40 chunks a
# dataset, 2^23 datasets).
DATASET_SHIFT = 40


def chunk_id_range(first_seq: int, last_seq: int | None = None) -> tuple[int, int]:
    """``[low, high)``: the chunk ids of the datasets ``first_seq`` to ``last_seq`` (one by default)."""
    return first_seq << DATASET_SHIFT, ((first_seq if last_seq is None else last_seq) + 1) << DATASET_SHIFT


def next_chunk_id(dataset_seq: int, top: int | None) -> int:
    """The first free id of the dataset's range, after ``top`` (its highest id so far)."""
    return (dataset_seq << DATASET_SHIFT) if top is None else top + 1


def dataset_seq_of(chunk_id: int) -> int:
    return chunk_id >> DATASET_SHIFT


@dataclass(frozen=True)
class ChunkHit:
    """An indexed chunk with what a search result shows of its object."""

    id: int
    object_id: str
    chunk_no: int
    dataset_id: str
    tenant_id: str
    text: str
    original_filename: str
    mime_type: str
    object_status: str
