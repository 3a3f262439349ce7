"""The ``ipto`` command line (click).

``ipto serve`` and ``ipto admin`` run the engine (:mod:`engine.cli.server`); every other
command is a client of a running server through :mod:`engine.client`. A failed client
command prints one line — the server's message, error code, HTTP status and request id —
and exits 1; usage errors (and missing credentials) exit 2; ``--debug`` shows the
traceback instead. CLI.md is the user's guide.
"""

from __future__ import annotations

from typing import Any

import click

from engine.cli import account, datasets, imports, market, money, objects, upload
from engine.cli.context import common_options, meta
from engine.cli.server import admin, serve

# Commands that run the engine itself keep their own error handling (and tracebacks).
_ENGINE_COMMANDS = frozenset({"serve", "admin"})


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


class IptoGroup(click.Group):
    """Turns a client command's failure into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise  # click prints these (CliFailure as one line) and picks the exit code
        except BaseException as exc:  # noqa: B036 - KeyboardInterrupt may come inside a trio exception group
            leaves = _leaves(exc)
            if (meta(ctx).get("ipto.debug") or ctx.invoked_subcommand in _ENGINE_COMMANDS
                    or any(isinstance(leaf, (SystemExit, click.exceptions.Exit, click.ClickException)) for leaf in leaves)):
                raise
            if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
                click.echo("ipto: interrupted (run the same command again to resume an upload)", err=True)
                ctx.exit(130)
            if not all(isinstance(leaf, Exception) for leaf in leaves):
                raise
            from engine.cli.output import error_line

            click.echo(error_line(leaves[0]), err=True)
            ctx.exit(1)


@click.group(cls=IptoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ipto-engine")
@common_options
def main() -> None:
    """IPTO ingestion engine: run it (serve, admin) or use one (everything else).

    \b
    Provider workflow:
      ipto login --url http://127.0.0.1:8080
      ipto datasets create "AP Invoices 2025"
      ipto upload ./invoices --dataset dset_…

    \b
    Buyer workflow:
      ipto search 'acme invoice -draft'
      ipto access obj_… --output invoice.pdf
    """


for command in (serve, admin, account.login, account.logout, account.signup, account.whoami, datasets.datasets,
                upload.upload, imports.import_, imports.imports, objects.objects, objects.review, objects.jobs, market.search,
                market.access, money.spend, money.activity, money.analytics, money.payouts, money.dispute):
    main.add_command(command)
