"""``ipto objects list|get|delete|download``, ``ipto review …`` (admins), ``ipto jobs get``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine.cli.context import common_options, json_option, list_options, run, take
from engine.cli.output import emit, error_line, print_json, print_record, print_rows

if TYPE_CHECKING:
    from engine.client import AsyncClient

OBJECT_STATUSES = ("pending_upload", "uploaded", "normalizing", "extracting", "enriching", "indexing", "active", "failed", "deleted")
REVIEW_STATES = ("staged", "under_review", "approved", "rejected", "expired")
COLUMNS = ("object_id", "original_filename", "size_bytes", "status", "review_state", "created_at")
QUEUE_COLUMNS = ("object_id", "tenant_id", "dataset_id", "original_filename", "mime_type", "size_bytes", "review_state")


@click.group()
def objects() -> None:
    """Objects (uploaded files) of your datasets."""


@objects.command("list")
@click.option("--dataset", "dataset_id", required=True, help="Dataset id.")
@click.option("--status", type=click.Choice(OBJECT_STATUSES))
@click.option("--review-state", type=click.Choice(REVIEW_STATES))
@list_options
@common_options
@json_option
@click.pass_context
def list_(ctx: click.Context, dataset_id: str, status: str | None, review_state: str | None, limit: int, all_: bool, as_json: bool) -> None:
    """Objects of a dataset, newest first."""

    async def go(api: AsyncClient) -> list[Any]:
        return await take(api.iter_objects(dataset_id, status, review_state, page_size=min(limit, 100)), None if all_ else limit)

    rows = run(ctx, go)
    emit(as_json, rows, lambda: print_rows(rows, COLUMNS, empty="no objects"))


@objects.command()
@click.argument("object_id")
@common_options
@json_option
@click.pass_context
def get(ctx: click.Context, object_id: str, as_json: bool) -> None:
    """Show an object: status, review state, checksum, artifacts."""

    async def go(api: AsyncClient) -> Any:
        return await api.get_object(object_id)

    obj = run(ctx, go)
    emit(as_json, obj, lambda: print_record(obj))


@objects.command()
@click.argument("object_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@common_options
@json_option
@click.pass_context
def delete(ctx: click.Context, object_id: str, yes: bool, as_json: bool) -> None:
    """Delete an object (its bytes and index entries are removed)."""
    if not yes:
        click.confirm(f"Delete {object_id}?", abort=True, err=True)

    async def go(api: AsyncClient) -> Any:
        return await api.delete_object(object_id)

    obj = run(ctx, go)
    emit(as_json, obj, lambda: click.echo(f"deleted {object_id}"))


@objects.command()
@click.argument("object_id")
@click.option("-o", "--output", "dest", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="File to write, or a directory to hold the file under its original name.")
@common_options
@json_option
@click.pass_context
def download(ctx: click.Context, object_id: str, dest: Path, as_json: bool) -> None:
    """Download an object's bytes (checked against its SHA-256)."""

    async def go(api: AsyncClient) -> Path:
        return await api.download(object_id, dest)

    path = run(ctx, go)
    emit(as_json, {"object_id": object_id, "path": str(path), "size_bytes": path.stat().st_size},
         lambda: click.echo(f"wrote {path}"))


# -- review queue (admin:*) -------------------------------------------------------------------
@click.group()
def review() -> None:
    """The review queue of staged objects (platform admins)."""


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MODALITIES = ("document", "text", "image", "audio", "video", "tabular")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _ago(value: str | None) -> str | None:
    """``48h`` (or 90m, 2d, 30s) as the ISO instant that long before now."""
    if value is None:
        return None
    match = _DURATION.match(value.strip())
    if match is None:
        raise click.BadParameter(f"{value!r} is not a duration such as 30m, 48h or 2d")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


@review.command("list")
@click.option("--review-state", type=click.Choice(REVIEW_STATES), help="Only objects in this state (default: staged and under_review).")
@click.option("--tenant-id", help="Only this tenant's objects.")
@click.option("--dataset-id", help="Only this dataset's objects.")
@click.option("--modality", type=click.Choice(MODALITIES), help="Only objects of this kind (from their MIME type).")
@click.option("--older-than", help="Only objects uploaded longer ago than this (30m, 48h, 2d).")
@click.option("--newer-than", help="Only objects uploaded within this (30m, 48h, 2d).")
@click.option("--oldest-first", is_flag=True, help="Oldest upload first (closest to expiry) instead of newest first.")
@list_options
@common_options
@json_option
@click.pass_context
def review_list(
    ctx: click.Context, review_state: str | None, tenant_id: str | None, dataset_id: str | None, modality: str | None,
    older_than: str | None, newer_than: str | None, oldest_first: bool, limit: int, all_: bool, as_json: bool,
) -> None:
    """Objects waiting for review, of every tenant."""
    filters = {"dataset_id": dataset_id, "modality": modality, "uploaded_to": _ago(older_than), "uploaded_from": _ago(newer_than),
               "order": "oldest" if oldest_first else None}

    async def go(api: AsyncClient) -> list[Any]:
        return await take(api.iter_staged(review_state, tenant_id, page_size=min(limit, 100), **filters), None if all_ else limit)

    rows = run(ctx, go)
    emit(as_json, rows, lambda: print_rows(rows, QUEUE_COLUMNS, empty="the queue is empty"))


@review.command("preview")
@click.argument("object_id")
@common_options
@json_option
@click.pass_context
def review_preview(ctx: click.Context, object_id: str, as_json: bool) -> None:
    """What a staged object holds (its text, PDF pages, image size), without claiming it."""

    async def go(api: AsyncClient) -> Any:
        return await api.preview_staged(object_id)

    shown = run(ctx, go)

    def human() -> None:
        print_record({k: v for k, v in shown.items() if k != "text" and v is not None})
        if shown.get("text"):
            click.echo("")
            # An uploaded file's text may hold terminal escape sequences: shown, never obeyed.
            text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", shown["text"])
            click.echo(text + ("\n[… cut]" if shown.get("truncated") else ""))

    emit(as_json, shown, human)


@review.command("get")
@click.argument("object_id")
@common_options
@json_option
@click.pass_context
def review_get(ctx: click.Context, object_id: str, as_json: bool) -> None:
    """Open a staged object for review (it moves to under_review)."""

    async def go(api: AsyncClient) -> Any:
        return await api.get_staged(object_id)

    obj = run(ctx, go)
    emit(as_json, obj, lambda: print_record(obj))


def _decide(ctx: click.Context, object_ids: tuple[str, ...], as_json: bool, action: str, reason: str | None = None) -> None:
    """Apply one decision to each object; a failure on one does not stop the others."""

    async def go(api: AsyncClient) -> list[tuple[str, Any, BaseException | None]]:
        from engine.client.errors import IptoError

        out: list[tuple[str, Any, BaseException | None]] = []
        for oid in object_ids:
            try:
                if action == "approve":
                    out.append((oid, await api.approve(oid), None))
                elif action == "reject":
                    out.append((oid, await api.reject(oid, reason), None))
                else:
                    out.append((oid, await api.claim(oid), None))
            except IptoError as exc:
                out.append((oid, None, exc))
        return out

    results = run(ctx, go)
    failed = [(oid, exc) for oid, _, exc in results if exc is not None]
    if as_json:
        print_json([answer for _, answer, exc in results if exc is None])
    else:
        for oid, answer, exc in results:
            if exc is None:
                extra = f" (job {answer['job_id']})" if answer.get("job_id") else ""
                click.echo(f"{oid}: {answer['review_state']}{extra}")
    for oid, exc in failed:
        click.echo(f"{oid}: {error_line(exc)}", err=True)
    if failed:
        ctx.exit(1)


@review.command()
@click.argument("object_ids", nargs=-1, required=True)
@common_options
@json_option
@click.pass_context
def claim(ctx: click.Context, object_ids: tuple[str, ...], as_json: bool) -> None:
    """Claim objects for review (under_review)."""
    _decide(ctx, object_ids, as_json, "claim")


@review.command()
@click.argument("object_ids", nargs=-1, required=True)
@common_options
@json_option
@click.pass_context
def approve(ctx: click.Context, object_ids: tuple[str, ...], as_json: bool) -> None:
    """Approve objects: each starts its processing job."""
    _decide(ctx, object_ids, as_json, "approve")


@review.command()
@click.argument("object_ids", nargs=-1, required=True)
@click.option("--reason", help="Why (kept with the object).")
@common_options
@json_option
@click.pass_context
def reject(ctx: click.Context, object_ids: tuple[str, ...], reason: str | None, as_json: bool) -> None:
    """Reject objects: their bytes are purged and never indexed."""
    _decide(ctx, object_ids, as_json, "reject", reason)


# -- jobs -------------------------------------------------------------------------------------
@click.group()
def jobs() -> None:
    """Processing jobs."""


@jobs.command("get")
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Poll until the job has succeeded or failed.")
@click.option("--poll-interval", type=click.FloatRange(0.05), default=1.0, show_default=True, help="Seconds between polls.")
@common_options
@json_option
@click.pass_context
def jobs_get(ctx: click.Context, job_id: str, wait: bool, poll_interval: float, as_json: bool) -> None:
    """Show a job (with --wait: once it has finished; exit 1 if it failed)."""

    async def go(api: AsyncClient) -> Any:
        return await (api.wait_job(job_id, poll_seconds=poll_interval) if wait else api.get_job(job_id))

    job = run(ctx, go)
    emit(as_json, job, lambda: print_record(job))
    if wait and job["status"] == "failed":
        ctx.exit(1)
