"""Printing results: JSON for scripts (``--json``), rich tables for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click


def stdout_console() -> Any:
    from rich.console import Console

    # Not a terminal (a pipe, a file): do not squeeze ids into 80 columns.
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def print_record(record: Mapping[str, Any], fields: Sequence[str] | None = None, title: str | None = None) -> None:
    """One resource as a two-column table (every field unless ``fields`` is given)."""
    from rich.table import Table

    table = Table(show_header=False, title=title, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key in fields or list(record):
        if key in record:
            table.add_row(key, _cell(record[key]))
    stdout_console().print(table)


def print_rows(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], title: str | None = None, empty: str = "nothing") -> None:
    from rich.table import Table

    rows = list(rows)
    if not rows:
        click.echo(f"({empty})")
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    stdout_console().print(table)


def emit(as_json: bool, data: Any, human: Any) -> None:
    """``data`` as JSON, or ``human()`` for a terminal."""
    if as_json:
        print_json(data)
    else:
        human()


def error_line(exc: BaseException) -> str:
    """One line for a failure: the server's message, code, status and request id."""
    from engine.client.errors import ApiError, IptoError

    if isinstance(exc, ApiError):
        return f"ipto: {exc.message} ({exc.code}, HTTP {exc.status}" + (f", request_id {exc.request_id})" if exc.request_id else ")")
    if isinstance(exc, IptoError):
        return f"ipto: {exc}"
    if isinstance(exc, OSError):
        return f"ipto: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return f"ipto: unexpected error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"
