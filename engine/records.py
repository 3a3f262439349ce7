"""Record files (JSONL, CSV) read in batches and validated against a dataset's JSON Schema.

Pure, blocking code for worker threads. A reader starts at a byte offset and line number
(an import's committed checkpoint) and yields :class:`Batch` es, each ending on a record
boundary, so memory stays flat whatever the file size and a resumed import continues
exactly where the committed records end.

Schemas are checked against their meta-schema on the way in (:func:`check_schema`) and
compiled once (:func:`compile_schema`) by jsonschema-rs (drafts 4, 6, 7, 2019-09 and
2020-12; a Rust validator, ~4× faster per record than fastjsonschema was here).
"""

from __future__ import annotations

import csv
import hashlib
import os
import pickle
import struct
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from engine.errors import InvalidRequest, SchemaTooLarge
from engine.jsonlimits import MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH, check_depth
from engine.store.packing import pack

MAX_LINE_BYTES = 16 * 1024 * 1024  # longer physical lines are rejected, never buffered whole

Validate = Callable[[dict[str, Any]], "tuple[str | None, str] | None"]  # (field, message) of the first problem


class ParseFailure(Exception):
    """The file cannot be read as records at all (the import fails with this reason)."""


# -- schemas --------------------------------------------------------------------------------
def check_schema(schema: Any) -> dict[str, Any]:
    """A usable JSON Schema for records, or InvalidRequest naming the problem."""
    import jsonschema  # type: ignore[import-untyped,unused-ignore]  # imported when used: it is several MiB

    if not isinstance(schema, dict):
        raise InvalidRequest("schema must be a JSON Schema object", {"fields": {"schema": "must be an object"}})
    # Bounded before the meta-schema check walks it recursively (depth first: it costs no
    # stack, and orjson cannot serialise past 254 levels to measure the size).
    check_depth(schema, MAX_SCHEMA_DEPTH, "schema")
    size = len(orjson.dumps(schema))
    if size > MAX_SCHEMA_BYTES:
        raise SchemaTooLarge(f"the schema is {size} bytes; at most {MAX_SCHEMA_BYTES} are accepted",
                             {"fields": {"schema": f"at most {MAX_SCHEMA_BYTES} bytes serialised"}})
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise InvalidRequest(f"schema is not valid JSON Schema at {where}: {exc.message}",
                             {"fields": {"schema": f"at {where}: {exc.message}"}}) from None
    if schema.get("type") not in (None, "object") and schema.get("type") != ["object"]:
        raise InvalidRequest("a record schema must describe objects", {"fields": {"schema": "type must be object"}})
    try:
        _build(schema)  # what the importer will compile: refused here, not at import time
    except ParseFailure as exc:
        raise InvalidRequest(str(exc), {"fields": {"schema": str(exc)}}) from None
    return schema


def _build(schema: Mapping[str, Any]) -> Any:
    """The schema compiled by jsonschema-rs: offline (a ``$ref`` outside the schema is never
    fetched: tenants' schemas must not make the engine send requests) and with ``format``
    asserted. ParseFailure when it cannot be compiled (draft 3, an unresolvable reference)."""
    import jsonschema_rs  # type: ignore[import-untyped,unused-ignore]

    try:
        return jsonschema_rs.validator_for(dict(schema), validate_formats=True, offline=True)
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParseFailure(f"the schema cannot be compiled: {first}") from None


def _field_of(path: Any) -> str | None:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else None


_compiled: dict[str, Validate] = {}
_COMPILED_KEPT = 64


def compile_schema(schema: Mapping[str, Any]) -> Validate:
    """A validator returning None or ``(field, message)`` of the record's first problem;
    compiled once per distinct schema. Valid records (nearly all) take the compiled
    ``is_valid`` path; only a refused one is walked again for its error."""
    key = hashlib.sha256(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).hexdigest()
    if key in _compiled:
        return _compiled[key]
    compiled = _build(schema)
    is_valid = compiled.is_valid

    def validate(record: dict[str, Any]) -> tuple[str | None, str] | None:
        if is_valid(record):
            return None
        error = next(iter(compiled.iter_errors(record)))
        path = list(error.instance_path)
        missing = getattr(error.kind, "property", None) if type(error.kind).__name__ == "Required" else None
        if missing is not None:
            return _field_of([*path, missing]), "is required"
        return _field_of(path), error.message

    if len(_compiled) >= _COMPILED_KEPT:
        _compiled.pop(next(iter(_compiled)))
    _compiled[key] = validate
    return validate


# -- reading --------------------------------------------------------------------------------
@dataclass
class Batch:
    lines: list[int] = field(default_factory=list)  # the line of each accepted record
    packed: bytes = b""  # the accepted records' JSON text (engine.store.packing)
    errors: list[dict[str, Any]] = field(default_factory=list)  # {line, field, message}
    parsed: int = 0  # records that were well-formed (accepted or refused by the schema)
    offset: int = 0  # bytes of the file handled once this batch is committed
    line: int = 0  # last physical line handled

    @classmethod
    def of(cls, lines: list[int], texts: list[bytes], errors: list[dict[str, Any]], parsed: int) -> Batch:
        """Accepted records packed here, in the reader's process: the server receives one
        compressed string per batch, not an object per record."""
        return cls(lines, pack(texts) if texts else b"", errors, parsed)


def _read_line(fh: BinaryIO) -> tuple[bytes | None, bool]:
    """One physical line without its newline, or (None, True) at EOF; over-long lines are
    skipped to their end and reported as (b"", False)."""
    raw = fh.readline(MAX_LINE_BYTES + 1)
    if not raw:
        return None, True
    if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
        while (more := fh.readline(1024 * 1024)) and not more.endswith(b"\n"):
            pass
        return b"", False
    return raw.rstrip(b"\r\n"), True


class JsonlReader:
    """JSON lines from a byte offset. The file is read in blocks split at C speed (no call
    per line); a line longer than MAX_LINE_BYTES is skipped to its end, never held whole."""

    BLOCK = 1 << 20

    def __init__(self, path: Path, validate: Validate, offset: int = 0, line: int = 0) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._size = os.fstat(self._fh.fileno()).st_size
        self.validate = validate
        self.seek(offset, line)

    def seek(self, offset: int, line: int) -> None:
        """Go to ``offset`` (the start of a line) and call it line ``line`` + 1."""
        self._fh.seek(offset)
        self.line = line
        self._pos = offset  # file offset just after the last line handed out
        self._lines: list[bytes | int] = []  # lines read ahead; an int is an over-long line's length
        self._next = 0
        self._tail = b""  # the start of a line whose end is not read yet
        self._end = False

    def close(self) -> None:
        self._fh.close()

    def _refill(self, until: int) -> bool:
        """Read ahead the next whole lines (up to ``until``); False once there are none."""
        while not self._end:
            block = self._fh.read(min(self.BLOCK, max(until - self._fh.tell(), 0)))
            if not block:
                self._end = True
                if self._tail:  # the last line has no newline
                    self._lines, self._next, self._tail = [self._tail], 0, b""
                    return True
                return False
            buffer = self._tail + block if self._tail else block
            parts = buffer.split(b"\n")
            self._tail = parts.pop()  # a line not ended yet
            lines: list[bytes | int] = list(parts)
            if len(buffer) > MAX_LINE_BYTES:  # rare: a line may be over-long
                lines = [len(p) + 1 if len(p) > MAX_LINE_BYTES else p for p in parts]
                if len(self._tail) > MAX_LINE_BYTES:
                    lines.append(self._skip_long_line(len(self._tail)))
                    self._tail = b""
            if lines:
                self._lines, self._next = lines, 0
                return True
        return False

    def _skip_long_line(self, skipped: int) -> int:
        """Read past the end of an over-long line of which ``skipped`` bytes were read;
        the line's whole length with its newline."""
        while True:
            block = self._fh.read(self.BLOCK)
            if not block:
                self._end = True
                return skipped
            newline = block.find(b"\n")
            if newline >= 0:
                self._fh.seek(newline + 1 - len(block), os.SEEK_CUR)  # read on from the next line
                return skipped + newline + 1
            skipped += len(block)

    def next_batch(self, records: int, until: int | None = None) -> Batch | None:
        until = self._size if until is None else until
        lines: list[int] = []
        texts: list[bytes] = []
        errors: list[dict[str, Any]] = []
        parsed = 0
        validate, loads, decode_error = self.validate, orjson.loads, orjson.JSONDecodeError
        while len(lines) + len(errors) < records and self._pos < until:
            if self._next == len(self._lines) and not self._refill(until):
                break
            raw = self._lines[self._next]
            self._next += 1
            self.line += 1
            if isinstance(raw, int):
                self._pos += raw
                errors.append({"line": self.line, "field": None, "message": f"line longer than {MAX_LINE_BYTES} bytes"})
                continue
            self._pos += len(raw) + 1
            if raw[-1:] == b"\r":
                raw = raw[:-1]
            try:
                record = loads(raw)
            except decode_error as exc:
                if not raw.strip():
                    continue  # blank lines are allowed
                problem = "not valid UTF-8" if "utf-8" in str(exc).lower() else f"not valid JSON: {exc}"
                errors.append({"line": self.line, "field": None, "message": problem})
                continue
            if type(record) is not dict:
                errors.append({"line": self.line, "field": None, "message": "a record must be a JSON object"})
                continue
            parsed += 1
            problem_at = validate(record)
            if problem_at is None:
                lines.append(self.line)
                texts.append(raw)
            else:
                errors.append({"line": self.line, "field": problem_at[0], "message": problem_at[1]})
        if not lines and not errors:
            return None  # end of file
        batch = Batch.of(lines, texts, errors, parsed)
        batch.offset, batch.line = min(self._pos, self._size), self.line  # the last line may lack its newline
        return batch


def _coerce(value: str, spec: Mapping[str, Any]) -> Any:
    """A CSV cell as the type the schema gives its column; ValueError when it cannot be."""
    types = spec.get("type", "string")
    types = types if isinstance(types, list) else [types]
    if value == "" and "null" in types:
        return None
    for typ in [t for t in types if t != "null"] or ["string"]:
        try:
            if typ == "string":
                return value
            if typ == "integer":
                return int(value.strip())
            if typ == "number":
                number = float(value.strip())
                return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
            if typ == "boolean":
                lowered = value.strip().lower()
                if lowered in ("true", "1", "yes"):
                    return True
                if lowered in ("false", "0", "no"):
                    return False
                raise ValueError
            if typ in ("object", "array"):
                parsed = orjson.loads(value)
                if isinstance(parsed, dict if typ == "object" else list):
                    return parsed
                raise ValueError
        except (ValueError, orjson.JSONDecodeError):
            continue
    raise ValueError(f"expected {' or '.join(t for t in types if t != 'null')}, got {value!r}")


class CsvReader:
    """CSV with a header row; cells coerced to the schema's types. Records may span lines
    (quoted newlines): physical lines are gathered until the quotes balance."""

    def __init__(self, path: Path, schema: Mapping[str, Any], validate: Validate, offset: int = 0, line: int = 0) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.validate = validate
        self.properties: Mapping[str, Any] = schema.get("properties", {})
        self.line = 0
        header = self._record()
        if header is None or not any(cell.strip() for cell in header[1]):
            raise ParseFailure("no CSV header: the file is empty")
        self.header = [cell.strip() for cell in header[1]]
        if self.properties and not set(self.header) & set(self.properties):
            raise ParseFailure("no CSV header: the first row names none of the schema's fields")
        if offset:
            self._fh.seek(offset)
            self.line = line

    def close(self) -> None:
        self._fh.close()

    def _record(self) -> tuple[int, list[str]] | None:
        """The next record: (its first line number, its cells)."""
        parts: list[bytes] = []
        first = self.line + 1
        while True:
            raw, fits = _read_line(self._fh)
            if raw is None:
                if not parts:
                    return None
                break
            self.line += 1
            if not fits:
                raise ParseFailure(f"line {self.line} is longer than {MAX_LINE_BYTES} bytes")
            parts.append(raw)
            if b"\n".join(parts).count(b'"') % 2 == 0:
                break
        try:
            text = b"\n".join(parts).decode("utf-8-sig" if first == 1 else "utf-8")
        except UnicodeDecodeError:
            return first, ["\x00invalid-utf8"]
        return first, next(csv.reader([text]), [])

    def next_batch(self, records: int) -> Batch | None:
        lines: list[int] = []
        texts: list[bytes] = []
        errors: list[dict[str, Any]] = []
        parsed = 0
        while len(lines) + len(errors) < records:
            found = self._record()
            if found is None:
                break
            line, cells = found
            if cells == ["\x00invalid-utf8"]:
                errors.append({"line": line, "field": None, "message": "not valid UTF-8"})
                continue
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(self.header):
                errors.append({"line": line, "field": None,
                                     "message": f"has {len(cells)} cells but the header has {len(self.header)}"})
                continue
            record: dict[str, Any] = {}
            problem: tuple[str | None, str] | None = None
            for name, cell in zip(self.header, cells, strict=True):
                spec = self.properties.get(name, {"type": "string"})
                if cell == "" and "null" not in (spec.get("type") if isinstance(spec.get("type"), list) else [spec.get("type")]):
                    continue  # an empty cell is an absent field
                try:
                    record[name] = _coerce(cell, spec)
                except ValueError as exc:
                    problem = (name, str(exc))
                    break
            parsed += 1
            problem = problem or self.validate(record)
            if problem is None:
                lines.append(line)
                texts.append(orjson.dumps(record))
            else:
                errors.append({"line": line, "field": problem[0], "message": problem[1]})
        if not lines and not errors:
            return None  # end of file
        batch = Batch.of(lines, texts, errors, parsed)
        batch.offset, batch.line = self._fh.tell(), self.line
        return batch


# -- a reader in its own process ----------------------------------------------------------
# Parsing and validating are pure-Python CPU work; in their own process they run truly
# beside the server's commits instead of fighting them for the GIL. The child writes
# length-prefixed pickled frames on stdout: a Batch each, then None or ("failed", reason).

FRAME_HEADER = struct.Struct("!Q")


def _send(out: BinaryIO, message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(FRAME_HEADER.pack(len(payload)) + payload)
    out.flush()


def _line_start_at_or_after(fh: BinaryIO, pos: int, base: int, size: int) -> int:
    """The first offset >= ``pos`` where a line starts (``base`` always is one)."""
    if pos <= base:
        return base
    if pos >= size:
        return size
    fh.seek(pos - 1)
    while True:
        block = fh.read(1 << 20)
        if not block:
            return size
        newline = block.find(b"\n")
        if newline >= 0:
            return fh.tell() - len(block) + newline + 1


def striped_batches(path: Path, validate: Validate, offset: int, line: int, worker: int, workers: int,
                    chunk_bytes: int) -> Iterator[Batch]:
    """JSONL from ``offset`` cut into chunks of about ``chunk_bytes`` on line boundaries;
    this worker parses chunks ``worker, worker + workers, …`` and yields one Batch per own
    chunk (empty ones too, so a merger taking workers in turn stays in file order). Lines
    of other workers' chunks are only counted, at C speed, to keep line numbers exact."""
    size = path.stat().st_size
    with open(path, "rb") as probe, open(path, "rb") as fh:
        reader = JsonlReader(path, validate, offset, line)
        start, k = offset, 0
        try:
            while start < size:
                end = _line_start_at_or_after(probe, offset + (k + 1) * chunk_bytes, offset, size)
                if k % workers == worker:
                    reader.seek(start, reader.line)
                    batch = reader.next_batch(1 << 62, until=end) or Batch()
                    batch.offset, batch.line = end, reader.line
                    yield batch
                else:
                    fh.seek(start)
                    left = end - start
                    while left:
                        block = fh.read(min(left, 1 << 22))
                        reader.line += block.count(b"\n")
                        left -= len(block)
                start, k = end, k + 1
        finally:
            reader.close()


def reader_main(argv: list[str]) -> None:
    """``python -m engine.records '<json args>'``: stream batches of one import file
    (or, with ``workers`` > 1, this worker's stripe of a JSONL file)."""
    args = orjson.loads(argv[0])
    out = sys.stdout.buffer
    try:
        validate = compile_schema(args["schema"])
        path = Path(args["path"])
        if args["format"] == "jsonl" and args.get("workers", 1) > 1:
            for stripe in striped_batches(path, validate, args["offset"], args["line"], args["worker"], args["workers"],
                                          args["chunk_bytes"]):
                _send(out, stripe)
            _send(out, None)
            return
        reader: JsonlReader | CsvReader = (
            CsvReader(path, args["schema"], validate, args["offset"], args["line"])
            if args["format"] == "csv"
            else JsonlReader(path, validate, args["offset"], args["line"])
        )
        try:
            while (batch := reader.next_batch(args["batch_records"])) is not None:
                _send(out, batch)
        finally:
            reader.close()
        _send(out, None)
    except ParseFailure as exc:
        _send(out, ("failed", str(exc)))
    except BrokenPipeError:
        pass  # the server went away (stopped, or gave up on this import)


if __name__ == "__main__":
    # Run the importable module's copy, so pickled batches name engine.records.Batch.
    from engine import records

    records.reader_main(sys.argv[1:])
