"""Timestamps as SQLite text: fixed-width ISO 8601 UTC with microseconds (sorts in time order)."""

from __future__ import annotations

from datetime import UTC, datetime


def ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
