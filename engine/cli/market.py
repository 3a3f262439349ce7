"""``ipto search`` and ``ipto access``: a buyer's search and retrieval."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine.cli.context import common_options, json_option, run
from engine.cli.output import emit, print_record, stdout_console

if TYPE_CHECKING:
    from engine.client import AsyncClient

MODES = ("hybrid", "lexical", "vector")


def _marked(snippet: str, highlights: list[list[int]]) -> Any:
    """The snippet as rich Text with its highlights in bold."""
    from rich.text import Text

    text = Text(snippet)
    for start, end in highlights:
        text.stylize("bold yellow", start, end)
    return text


def print_results(page: dict[str, Any]) -> None:
    console = stdout_console()
    if not page["results"]:
        console.print("(no results)")
    for r in page["results"]:
        console.print(f"[bold]{r['rank']}.[/bold] {r['original_filename']}  [dim]{r['object_id']} #{r['chunk_index']} · "
                      f"{r['dataset_id']} · score {r['score']:.4g}[/dim]")
        console.print(_marked(r["snippet"].replace("\n", " "), r["highlights"]))
        console.print()
    console.print(f"[dim]search {page['search_id']}" + (f" · more: --cursor {page['next_cursor']}" if page["has_more"] else "") + "[/dim]")


@click.command()
@click.argument("query")
@click.option("--dataset", "dataset_ids", multiple=True, help="Search only this dataset (repeatable).")
@click.option("--mode", type=click.Choice(MODES), default=None, help="Ranking (the server's default: hybrid).")
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--cursor", default=None, help="Continue a search where its last page ended.")
@common_options
@json_option
@click.pass_context
def search(ctx: click.Context, query: str, dataset_ids: tuple[str, ...], mode: str | None, limit: int, cursor: str | None,
           as_json: bool) -> None:
    """Search every dataset you may search, with Lucene's query syntax.

    \b
    ipto search 'acme invoice -draft'
    ipto search '"payment terms"~3 inv*' --mode lexical --dataset dset_…
    """

    async def go(api: AsyncClient) -> Any:
        return await api.search(query, dataset_ids=list(dataset_ids) or None, mode=mode, limit=limit, cursor=cursor)

    page = run(ctx, go)
    emit(as_json, page, lambda: print_results(page))


@click.command()
@click.argument("object_id")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="File (or directory) to write; default: the original filename in the current directory.")
@click.option("--search-id", default=None, help="The search the object was found by.")
@click.option("--result-id", default=None, help="The result the object was found as.")
@click.option("--url-only", is_flag=True, help="Print the access and its download URL; do not download.")
@common_options
@json_option
@click.pass_context
def access(ctx: click.Context, object_id: str, output: Path | None, search_id: str | None, result_id: str | None, url_only: bool,
           as_json: bool) -> None:
    """Retrieve an object: one access, charged by its dataset's price, then the download."""

    async def go(api: AsyncClient) -> Any:
        if url_only:
            return await api.access(object_id, search_id=search_id, result_id=result_id), None
        granted, out = await api.retrieve(object_id, output or Path.cwd(), search_id=search_id, result_id=result_id)
        return granted, out

    granted, out = run(ctx, go)
    result = {**granted, "file": str(out) if out else None}
    emit(as_json, result, lambda: print_record(
        result, ["access_id", "object_id", "dataset_id", "charge", "file", "download_url", "expires_at"]))
