"""The ``gtnd`` command: one thin module per command, registered here.

Command modules import heavy libraries (torch, nncf, tensorrt) inside their functions so
that ``gtnd plan`` and ``gtnd --help`` start fast and run where torch is not installed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from gtn_deploy import __version__
from gtn_deploy.cli import (bench as bench_cmd, calibrate as calibrate_cmd, deploy as deploy_cmd,
                            distill as distill_cmd, bundle as bundle_cmd, export as export_cmd,
                            extract as extract_cmd, pipeline as pipeline_cmd, plan as plan_cmd,
                            predictor as predictor_cmd, profiles as profiles_cmd,
                            supernet as supernet_cmd, teacher as teacher_cmd)
from gtn_deploy.progress import setup_logging


def _flags_show_no_type() -> None:
    """Bare flags (``--json``, ``-v``) take no value, so help shows no type beside them.

    Typer's rich help prints one (``--json <bool>``) where its plain help prints none; this
    one override covers every command and the help options typer adds. Where typer has no
    ``display_type_rich`` (older releases, which print none either) it changes nothing.
    """
    from typer.core import TyperOption

    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "gtnd_flags", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag or self.count else original(self, ctx)

    display_type_rich.gtnd_flags = True
    TyperOption.display_type_rich = display_type_rich


_flags_show_no_type()

app = typer.Typer(
    name="gtnd",
    help="gtn_deploy: plan, distil, export and benchmark supernet students for many devices.",
    no_args_is_help=True,
    add_completion=True,  # gtnd --install-completion
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # sub-commands inherit it
)

app.command("plan")(plan_cmd.plan)
app.command("pipeline")(pipeline_cmd.pipeline)
app.command("deploy")(deploy_cmd.deploy)
app.command("bench")(bench_cmd.bench)
app.command("calibrate")(calibrate_cmd.calibrate)
app.command("distill")(distill_cmd.distill)
app.command("export")(export_cmd.export)
app.command("extract")(extract_cmd.extract)
app.add_typer(bundle_cmd.app, name="bundle")
app.add_typer(profiles_cmd.app, name="profiles")
app.add_typer(predictor_cmd.app, name="predictor")
app.add_typer(teacher_cmd.app, name="teacher")
app.add_typer(supernet_cmd.app, name="supernet")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gtn_deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, show_default=False,
                                         help="More detail in the log (repeatable).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q",
                                        help="Warnings and errors only; no progress bars.")] = False,
) -> None:
    """gtn_deploy: one generic teacher, many devices."""
    setup_logging(-1 if quiet else verbose)


def main() -> None:
    app()
