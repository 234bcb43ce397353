"""The ``gtnd`` command: one thin module per command, registered here.

Command modules import heavy libraries (torch, nncf, tensorrt) inside their functions so
that ``gtnd plan`` and ``gtnd --help`` start fast and run where torch is not installed.
"""

from __future__ import annotations

import typer

from gtn_deploy import __version__
from gtn_deploy.cli import plan as plan_cmd
from gtn_deploy.cli import profiles as profiles_cmd

app = typer.Typer(
    name="gtnd",
    help="gtn_deploy: plan, distil, export and benchmark supernet students for many devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("plan")(plan_cmd.plan)
app.add_typer(profiles_cmd.app, name="profiles")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gtn_deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Show the version and exit.")) -> None:
    """gtn_deploy: one generic teacher, many devices."""


def main() -> None:
    app()
