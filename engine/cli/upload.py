"""``ipto upload PATH... --dataset ID``: initiate, upload and confirm files and folders.

Each file is hashed (SHA-256, sent as ``checksum_sha256``), its content type guessed from
its extension, and uploaded through its presigned URL(s); multipart parts go up in
parallel (``--parallel`` PUTs in flight across all files). Progress bars (rich) show each
file and the whole batch on stderr; a summary table (or ``--json``) goes to stdout. An
interrupted run is resumed by running the same command again: the parts the server already
accepted are not sent twice (state in the user's state dir, see engine.client.transfer).
Files the dataset already holds under the same name with the same SHA-256 are skipped and
reported as such (like ``aws s3 sync``), so running the command twice uploads nothing
twice; ``--force`` uploads them anyway. Exit code 1 when any file failed. Several files
go through the batch routes (up to 500 initiated, and later confirmed, per request; see
engine.client.bulk_transfer), one file through the single ones.
"""

from __future__ import annotations

import mimetypes
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import trio

from engine.cli.context import CliUsageFailure, common_options, json_option, make_client, settings, state_dir
from engine.cli.output import print_json, stderr_console, stdout_console

if TYPE_CHECKING:
    from engine.client.transfer import UploadResult

# Types the server accepts that Python's mimetypes does not know (or knows otherwise).
EXTRA_TYPES = {
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".parquet": "application/vnd.apache.parquet",
    ".webp": "image/webp",
    ".flac": "audio/flac",
    ".mkv": "video/x-matroska",
    ".m4a": "audio/mp4",
}


def guess_type(path: Path) -> str:
    extra = EXTRA_TYPES.get(path.suffix.lower())
    if extra:
        return extra
    guessed, _ = mimetypes.guess_type(path.name, strict=False)
    return guessed or "application/octet-stream"


def collect_files(paths: tuple[Path, ...], include_hidden: bool) -> list[Path]:
    """Files named, and every file under folders named (recursively, sorted), each once."""
    seen: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                if not include_hidden:
                    dirs[:] = [d for d in dirs if not d.startswith(".")]
                dirs.sort()
                for name in sorted(files):
                    if include_hidden or not name.startswith("."):
                        seen.setdefault(Path(root, name).resolve(), None)
        else:
            seen.setdefault(path.resolve(), None)
    return list(seen)


class RichEvents:
    """Upload events drawn as rich progress bars: one per file in flight, one overall."""

    def __init__(self, progress: Any, total_bytes: int, files: int) -> None:
        self.progress = progress
        self.total_bytes = total_bytes
        self.overall = progress.add_task(f"[bold]{files} file(s)", total=total_bytes)
        self.tasks: dict[Path, Any] = {}

    def _task(self, path: Path, size: int, what: str) -> Any:
        if path not in self.tasks:
            self.tasks[path] = self.progress.add_task(f"{what} {path.name}", total=size)
        else:
            self.progress.update(self.tasks[path], description=f"{what} {path.name}")
        return self.tasks[path]

    def hashing(self, path: Path, size: int) -> None:
        self._task(path, size, "hashing")

    def started(self, path: Path, size: int, parts_total: int, parts_done: int) -> None:
        resumed = f", resuming at part {parts_done + 1}" if parts_done else ""
        self._task(path, size, f"uploading ({parts_total} part(s){resumed})")

    def advance(self, path: Path, nbytes: int) -> None:
        if path in self.tasks:
            self.progress.advance(self.tasks[path], nbytes)
        self.progress.advance(self.overall, nbytes)

    def finished(self, path: Path, result: UploadResult) -> None:
        task = self.tasks.pop(path, None)
        if task is not None:
            self.progress.remove_task(task)
        if not result.ok or result.skipped:  # its bytes will not be sent: take them off the overall bar
            self.total_bytes -= result.size_bytes
            self.progress.update(self.overall, total=self.total_bytes)
        if result.skipped:
            self.progress.console.print(f"[dim]= {path.name} — already in the dataset ({result.object_id}), skipped[/]")
            return
        mark = "[green]✓[/]" if result.ok else "[red]✗[/]"
        self.progress.console.print(f"{mark} {path.name}" + ("" if result.error is None else f" — {result.error['message']}"))


async def _upload_all(api: Any, dataset_id: str, files: list[Path], content_type: str | None, parallel: int,
                      resume: bool, events: Any, force: bool) -> list[UploadResult]:
    from engine.client.bulk_transfer import upload_files
    from engine.client.transfer import ResumeStore, upload_file

    store = ResumeStore(state_dir() / "uploads") if resume else None
    if len(files) > 1:  # a folder's worth: batch initiate and confirm (engine.client.bulk_transfer)
        return await upload_files(api, dataset_id, [(path, content_type or guess_type(path)) for path in files],
                                  resume=store, parallel=parallel, events=events, skip_existing=not force)
    parts = trio.CapacityLimiter(parallel)  # PUTs in flight, all files together
    files_at_once = trio.CapacityLimiter(parallel)
    results: list[UploadResult | None] = [None] * len(files)

    async def one(i: int, path: Path) -> None:
        async with files_at_once:
            results[i] = await upload_file(api, dataset_id, path, content_type=content_type or guess_type(path),
                                           resume=store, parallel=parts, events=events, skip_existing=not force)

    async with trio.open_nursery() as nursery:
        for i, path in enumerate(files):
            nursery.start_soon(one, i, path)
    return [r for r in results if r is not None]


def _summary(results: list[UploadResult], base: dict[Path, str]) -> None:
    from rich.table import Table

    table = Table(title="upload summary")
    for column in ("file", "size", "object_id", "strategy", "parts sent/total", "status"):
        table.add_column(column, overflow="fold")
    for r in results:
        error = r.error or {}
        rid = f" (request_id {error['request_id']})" if error.get("request_id") else ""
        if r.skipped:
            status = "[dim]skipped: already in the dataset[/]"
        else:
            status = f"[green]{r.status}[/]" if r.ok else f"[red]failed: {error.get('message')}{rid}[/]"
        table.add_row(base.get(Path(r.path), r.path), f"{r.size_bytes:,}", r.object_id or "-", r.strategy or "-",
                      f"{r.parts_sent}/{r.parts_total}" + (" (resumed)" if r.resumed else ""), status)
    console = stdout_console()
    console.print(table)
    failed, skipped = sum(not r.ok for r in results), sum(r.skipped for r in results)
    console.print(f"{len(results) - failed - skipped} uploaded, {skipped} skipped, {failed} failed"
                  + (" (skipped: already in the dataset with the same name and SHA-256; --force uploads them)" if skipped else ""))


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--dataset", "dataset_id", required=True, help="Dataset to upload into.")
@click.option("--parallel", type=click.IntRange(1, 32), default=4, show_default=True, help="Part uploads in flight at once.")
@click.option("--content-type", help="Send this content type for every file instead of guessing from extensions.")
@click.option("--include-hidden", is_flag=True, help="Also upload dotfiles and files in dot-folders.")
@click.option("--no-resume", is_flag=True, help="Neither use nor keep resume state: start every file afresh.")
@click.option("--force", is_flag=True, help="Upload files the dataset already holds (same name and SHA-256) again.")
@click.option("--progress/--no-progress", default=None, help="Progress bars on stderr (default: when stderr is a terminal).")
@common_options
@json_option
@click.pass_context
def upload(ctx: click.Context, paths: tuple[Path, ...], dataset_id: str, parallel: int, content_type: str | None,
           include_hidden: bool, no_resume: bool, force: bool, progress: bool | None, as_json: bool) -> None:
    """Upload files and folders (recursively) to a dataset: initiate, upload, confirm.

    Files the dataset already holds (same name, same SHA-256) are skipped unless --force.
    Run the same command again after an interruption: parts already accepted are skipped."""
    files = collect_files(paths, include_hidden)
    if not files:
        raise CliUsageFailure("no files to upload")
    base = {f: os.path.relpath(f) if not os.path.relpath(f).startswith("..") else str(f) for f in files}
    api = make_client(settings(ctx))
    show = progress if progress is not None else (sys.stderr.isatty() and not as_json)

    async def main() -> list[UploadResult]:
        async with api:
            if not show:
                return await _upload_all(api, dataset_id, files, content_type, parallel, not no_resume, None, force)
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

            sizes = sum(f.stat().st_size for f in files)
            with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                          TimeRemainingColumn(), console=stderr_console(), transient=False) as bars:
                return await _upload_all(api, dataset_id, files, content_type, parallel, not no_resume,
                                         RichEvents(bars, sizes, len(files)), force)

    results = trio.run(main)
    failed, skipped = sum(not r.ok for r in results), sum(r.skipped for r in results)
    if as_json:
        print_json({"dataset_id": dataset_id, "uploaded": len(results) - failed - skipped, "skipped": skipped,
                    "failed": failed, "files": [r.as_dict() for r in results]})
    else:
        _summary(results, base)
    if failed:
        ctx.exit(1)
