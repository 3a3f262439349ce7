"""``ipto import FILE --dataset ID [--wait]`` (record files, V4) and ``ipto imports get|list``.

With ``--wait`` the import is polled until it is ``complete``, ``partial``, ``failed`` or
``pending_schema``, its status shown live on stderr. Exit code: 0 for complete (and for
partial with ``--allow-partial``), 1 otherwise, with one line on stderr saying why (the
status, its reason, and for ``partial`` that ``--allow-partial`` accepts it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine.cli.context import common_options, json_option, list_options, run, take
from engine.cli.output import emit, print_record, print_rows, stderr_console

if TYPE_CHECKING:
    from engine.client import AsyncClient

COLUMNS = ("import_id", "filename", "status", "accepted_count", "rejected_count", "created_at", "finished_at")
SUMMARY = ("import_id", "dataset_id", "filename", "status", "accepted_count", "rejected_count", "reason",
           "created_at", "started_at", "finished_at")


def _status_text(imp: Any) -> str:
    counts = ""
    if imp.get("accepted_count") is not None:
        counts = f" · accepted {imp.get('accepted_count', 0)} · rejected {imp.get('rejected_count', 0)}"
    return f"import {imp.get('import_id')}: {imp.get('status')}{counts}"


def _show(imp: Any) -> None:
    print_record(imp, SUMMARY)
    errors = imp.get("errors") or []
    if errors:
        print_rows(errors[:20], ("line", "field", "message"), title=f"rejected records (first {min(20, len(errors))})")


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", "dataset_id", required=True, help="Dataset to import the records into.")
@click.option("--wait", is_flag=True, help="Follow the import until it has finished.")
@click.option("--poll-interval", type=click.FloatRange(0.05), default=1.0, show_default=True, help="Seconds between polls.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), help="Give up waiting after this many seconds (exit 1).")
@click.option("--allow-partial", is_flag=True, help="Exit 0 when some records were rejected (status partial).")
@common_options
@json_option
@click.pass_context
def import_(ctx: click.Context, file: Path, dataset_id: str, wait: bool, poll_interval: float, timeout: float | None,
            allow_partial: bool, as_json: bool) -> None:
    """Import a record file (.jsonl or .csv) into a dataset."""
    live = wait and not as_json

    async def go(api: AsyncClient) -> Any:
        target = await api.import_file(dataset_id, file)
        if not wait:
            return await api.get_import(target["import_id"])
        if live and sys.stderr.isatty():
            console = stderr_console()
            with console.status(f"import {target['import_id']}: uploaded") as status:
                return await api.wait_import(target["import_id"], poll_seconds=poll_interval, timeout=timeout,
                                             on_update=lambda imp: status.update(_status_text(imp)))
        last: list[str] = []

        def report(imp: Any) -> None:  # not a terminal: one line per change of status
            if live and imp.get("status") not in last:
                last.append(imp.get("status"))
                click.echo(_status_text(imp), err=True)

        return await api.wait_import(target["import_id"], poll_seconds=poll_interval, timeout=timeout, on_update=report)

    try:
        imp = run(ctx, go)
    except TimeoutError:
        click.echo(f"ipto: the import did not finish within {timeout} s", err=True)
        ctx.exit(1)
    emit(as_json, imp, lambda: _show(imp))
    if wait and not (imp["status"] == "complete" or (imp["status"] == "partial" and allow_partial)):
        click.echo(why_not_complete(imp), err=True)
        ctx.exit(1)


def why_not_complete(imp: Any) -> str:
    """The one stderr line that explains exit code 1 after ``--wait``."""
    status, reason = imp.get("status"), imp.get("reason")
    line = f"ipto: import {imp.get('import_id')} ended {status}" + (f": {reason}" if reason else "")
    if status == "partial":
        line += (f" ({imp.get('accepted_count')} accepted; errors lists the rejected ones)."
                 " Exit 1 because not every record was accepted; --allow-partial accepts that")
    return line


@click.group()
def imports() -> None:
    """Record imports (V4) and their status."""


@imports.command("get")
@click.argument("import_id")
@click.option("--dataset", "dataset_id", help="Dataset of the import (optional).")
@common_options
@json_option
@click.pass_context
def imports_get(ctx: click.Context, import_id: str, dataset_id: str | None, as_json: bool) -> None:
    """Show an import: status, counts, rejected records."""

    async def go(api: AsyncClient) -> Any:
        return await api.get_import(import_id, dataset_id)

    imp = run(ctx, go)
    emit(as_json, imp, lambda: _show(imp))


@imports.command("list")
@click.option("--dataset", "dataset_id", required=True, help="Dataset id.")
@list_options
@common_options
@json_option
@click.pass_context
def imports_list(ctx: click.Context, dataset_id: str, limit: int, all_: bool, as_json: bool) -> None:
    """Imports of a dataset."""

    async def go(api: AsyncClient) -> list[Any]:
        return await take(api.iter_imports(dataset_id, page_size=min(limit, 100)), None if all_ else limit)

    rows = run(ctx, go)
    emit(as_json, rows, lambda: print_rows(rows, COLUMNS, empty="no imports"))
