"""``ipto datasets create|list|get|update|delete|set-schema|datapoints``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine.cli.context import CliUsageFailure, common_options, json_option, list_options, run, take
from engine.cli.output import emit, print_record, print_rows

if TYPE_CHECKING:
    from engine.client import AsyncClient

# The server validates these too; listing them here gives `--help` and early usage errors.
MODALITIES = ("document", "text", "image", "audio", "video", "tabular", "mixed")
MONETIZATION = ("open", "premium", "restricted")
PRICING = ("demand_curve", "flat_rate", "per_retrieval", "free")
VISIBILITY = ("private", "restricted", "listed")
STATUSES = ("draft", "ingesting", "active", "paused", "archived", "suspended", "pending_deletion", "deleted")
COLUMNS = ("dataset_id", "name", "status", "visibility", "source_modality", "object_count", "total_bytes", "total_datapoint_count")


def _schema(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        schema = json.loads(path.read_text())
    except ValueError as exc:
        raise CliUsageFailure(f"{path} is not JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise CliUsageFailure(f"{path} must hold a JSON Schema object")
    return schema


def _fields(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


_SCHEMA_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _dataset_fields(fn: Any) -> Any:
    """The dataset fields create and update both take."""
    for option in reversed((
        click.option("--description"),
        click.option("--source-modality", type=click.Choice(MODALITIES)),
        click.option("--monetization-mode", type=click.Choice(MONETIZATION)),
        click.option("--pricing-model", type=click.Choice(PRICING)),
        click.option("--visibility", type=click.Choice(VISIBILITY)),
    )):
        fn = option(fn)
    return fn


@click.group()
def datasets() -> None:
    """Create and manage your datasets."""


@datasets.command()
@click.argument("name")
@_dataset_fields
@click.option("--schema", "schema_file", type=_SCHEMA_FILE, help="JSON Schema file for record imports.")
@common_options
@json_option
@click.pass_context
def create(ctx: click.Context, name: str, schema_file: Path | None, as_json: bool, **options: Any) -> None:
    """Create a dataset called NAME (it starts in draft)."""
    fields = _fields(options)
    schema = _schema(schema_file)
    if schema is not None:
        fields["schema"] = schema

    async def go(api: AsyncClient) -> Any:
        return await api.create_dataset(name, **fields)

    ds = run(ctx, go)
    emit(as_json, ds, lambda: print_record(ds))


@datasets.command("list")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--visibility", type=click.Choice(VISIBILITY))
@list_options
@common_options
@json_option
@click.pass_context
def list_(ctx: click.Context, status: str | None, visibility: str | None, limit: int, all_: bool, as_json: bool) -> None:
    """Your datasets, newest first."""

    async def go(api: AsyncClient) -> list[Any]:
        return await take(api.iter_datasets(status, visibility, page_size=min(limit, 100)), None if all_ else limit)

    rows = run(ctx, go)
    emit(as_json, rows, lambda: print_rows(rows, COLUMNS, empty="no datasets"))


@datasets.command()
@click.argument("dataset_id")
@common_options
@json_option
@click.pass_context
def get(ctx: click.Context, dataset_id: str, as_json: bool) -> None:
    """Show one dataset with its counters."""

    async def go(api: AsyncClient) -> Any:
        return await api.get_dataset(dataset_id)

    ds = run(ctx, go)
    emit(as_json, ds, lambda: print_record(ds))


@datasets.command()
@click.argument("dataset_id")
@click.option("--name")
@_dataset_fields
@click.option("--status", type=click.Choice(("paused", "archived", "active")),
              help="Pause or archive the dataset, or resume it (active: back to the state its content warrants).")
@common_options
@json_option
@click.pass_context
def update(ctx: click.Context, dataset_id: str, as_json: bool, **options: Any) -> None:
    """Change fields of a dataset, or pause/archive/resume it."""
    fields = _fields(options)
    if not fields:
        raise click.UsageError("nothing to change: give at least one option (see --help)")

    async def go(api: AsyncClient) -> Any:
        return await api.update_dataset(dataset_id, **fields)

    ds = run(ctx, go)
    emit(as_json, ds, lambda: print_record(ds))


@datasets.command()
@click.argument("dataset_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@common_options
@json_option
@click.pass_context
def delete(ctx: click.Context, dataset_id: str, yes: bool, as_json: bool) -> None:
    """Delete a dataset with all its objects and records."""
    if not yes:
        click.confirm(f"Delete {dataset_id} and everything in it?", abort=True, err=True)

    async def go(api: AsyncClient) -> None:
        await api.delete_dataset(dataset_id)

    run(ctx, go)
    emit(as_json, {"dataset_id": dataset_id, "deleted": True}, lambda: click.echo(f"deleted {dataset_id}"))


def _moderate(ctx: click.Context, dataset_id: str, as_json: bool, suspend: bool) -> None:
    async def go(api: AsyncClient) -> Any:
        return await (api.suspend_dataset(dataset_id) if suspend else api.unsuspend_dataset(dataset_id))

    ds = run(ctx, go)
    emit(as_json, ds, lambda: print_record(ds))


@datasets.command()
@click.argument("dataset_id")
@common_options
@json_option
@click.pass_context
def suspend(ctx: click.Context, dataset_id: str, as_json: bool) -> None:
    """Platform admins: suspend any tenant's dataset (no uploads, imports, changes or catalog)."""
    _moderate(ctx, dataset_id, as_json, suspend=True)


@datasets.command()
@click.argument("dataset_id")
@common_options
@json_option
@click.pass_context
def unsuspend(ctx: click.Context, dataset_id: str, as_json: bool) -> None:
    """Platform admins: lift a dataset's suspension."""
    _moderate(ctx, dataset_id, as_json, suspend=False)


@datasets.command("set-schema")
@click.argument("dataset_id")
@click.argument("schema_file", type=_SCHEMA_FILE)
@common_options
@json_option
@click.pass_context
def set_schema(ctx: click.Context, dataset_id: str, schema_file: Path, as_json: bool) -> None:
    """Set the JSON Schema that record imports are validated against."""
    schema = _schema(schema_file)
    assert schema is not None

    async def go(api: AsyncClient) -> Any:
        return await api.set_schema(dataset_id, schema)

    answer = run(ctx, go)
    emit(as_json, answer, lambda: click.echo(f"schema of {dataset_id} set from {schema_file}"))


@datasets.command()
@click.argument("dataset_id")
@list_options
@common_options
@json_option
@click.pass_context
def datapoints(ctx: click.Context, dataset_id: str, limit: int, all_: bool, as_json: bool) -> None:
    """Accepted records of the dataset's imports, in import order."""

    async def go(api: AsyncClient) -> list[Any]:
        return await take(api.iter_datapoints(dataset_id, page_size=min(limit, 100)), None if all_ else limit)

    rows = run(ctx, go)

    def lines() -> None:  # one JSON record per line, like the .jsonl it came from
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))

    emit(as_json, rows, lines)
