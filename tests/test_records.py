"""The JSONL reader in isolation: line handling, over-long lines, and resuming from any
committed checkpoint exactly where it ended."""

from __future__ import annotations

import orjson
import pytest

from engine import records
from engine.records import Batch, JsonlReader, compile_schema, striped_batches
from engine.store.packing import pack, unpack

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}, "required": ["n"]}


def read_all(path, batch_records=3, offset=0, line=0) -> list[Batch]:
    reader = JsonlReader(path, compile_schema(SCHEMA), offset, line)
    try:
        out = []
        while (batch := reader.next_batch(batch_records)) is not None:
            out.append(batch)
        return out
    finally:
        reader.close()


def accepted(batches: list[Batch]) -> list[tuple[int, dict]]:
    return [(line, orjson.loads(text)) for b in batches for line, text in zip(b.lines, unpack(b.packed) if b.lines else [], strict=True)]


def errors(batches: list[Batch]) -> list[tuple[int, str | None, str]]:
    return [(e["line"], e["field"], e["message"]) for b in batches for e in b.errors]


@pytest.fixture(autouse=True)
def tiny_blocks(monkeypatch):
    monkeypatch.setattr(JsonlReader, "BLOCK", 7)  # lines straddle every block boundary


def test_crlf_blank_lines_bad_records_and_an_unterminated_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"n": 1}\r\n\n   \r\n{"n": -2}\n[1]\n{"n": 3\n\xff\xfe\n{"m": 4}\n{"n": 5}')
    batches = read_all(path)
    assert accepted(batches) == [(1, {"n": 1}), (9, {"n": 5})]
    problems = errors(batches)
    assert [(line, field) for line, field, _ in problems] == [(4, "n"), (5, None), (6, None), (7, None), (8, "n")]
    assert problems[1][2] == "a record must be a JSON object"
    assert "JSON" in problems[2][2] and problems[3][2] == "not valid UTF-8" and problems[4][2] == "is required"
    assert sum(b.parsed for b in batches) == 4  # well-formed objects, accepted or not
    assert batches[-1].offset == path.stat().st_size and batches[-1].line == 9


def test_an_over_long_line_is_reported_and_skipped_without_being_held(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "MAX_LINE_BYTES", 20)
    path = tmp_path / "r.jsonl"
    long_one = b'{"n": 1, "pad": "' + b"x" * 100 + b'"}'
    just_fits = b'{"n": 2, "p": "xxx"}'  # 20 bytes
    path.write_bytes(b'{"n": 0}\n' + long_one + b'\n' + just_fits + b'\n' + long_one + b'\n{"n": 3}\n' + long_one)
    for block in (7, 64, 1 << 20):  # the long line inside one block, or spread over many
        monkeypatch.setattr(JsonlReader, "BLOCK", block)
        batches = read_all(path)
        assert [line for line, _ in accepted(batches)] == [1, 3, 5]
        assert [(line, message) for line, _, message in errors(batches)] == [(n, "line longer than 20 bytes") for n in (2, 4, 6)]
        assert batches[-1].offset == path.stat().st_size


def test_resuming_from_every_checkpoint_gives_the_rest_exactly(tmp_path):
    path = tmp_path / "r.jsonl"
    lines = [orjson.dumps({"n": i if i % 5 else -i, "s": "é" * (i % 4)}) for i in range(1, 40)]
    lines[10:10] = [b"", b"not json"]
    path.write_bytes(b"\n".join(lines) + b"\n")
    whole = read_all(path)
    for k, batch in enumerate(whole):
        rest = read_all(path, offset=batch.offset, line=batch.line)
        assert accepted(rest) == accepted(whole[k + 1:])
        assert errors(rest) == errors(whole[k + 1:])


def test_striped_readers_together_equal_one_reader(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"n": i if i % 7 else -1}) + b"\n" for i in range(500)))
    validate = compile_schema(SCHEMA)
    stripes = [list(striped_batches(path, validate, 0, 0, w, 2, 300)) for w in range(2)]
    merged = [b for pair in zip(*stripes, strict=False) for b in pair] + stripes[0][len(stripes[1]):]
    assert accepted(merged) == accepted(read_all(path, batch_records=1000))
    assert errors(merged) == errors(read_all(path, batch_records=1000))
    assert [b.offset for b in merged] == sorted(b.offset for b in merged) and merged[-1].offset == path.stat().st_size


def test_packing_round_trips_any_text():
    texts = [orjson.dumps({"s": s}) for s in ["", "é", "\n", "\u2028", "x" * 5000]]
    assert unpack(pack(texts)) == [t.decode() for t in texts]
