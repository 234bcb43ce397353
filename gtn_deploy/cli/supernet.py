"""``gtnd supernet import``: a published supernet file -> our supernet folder (torch inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gtn_deploy.cli.choices import OFA_SOURCES, OFA_VARIANTS, choice
from gtn_deploy.cli.common import user_errors

app = typer.Typer(help="Import published supernets.", no_args_is_help=True)


@app.command("import")
@user_errors
def import_(
    checkpoint: Annotated[Path, typer.Argument(help="The published file, e.g. ofa_mbv3_d234_e346_k357_w1.0.")],
    out: Annotated[Path, typer.Option(help="Supernet folder to write (supernet.json + supernet.safetensors).")],
    source: Annotated[str, choice(OFA_SOURCES, "Format of CHECKPOINT.", "--from")] = "ofa-mbv3",
    variant: Annotated[Optional[str], choice(OFA_VARIANTS, "Width of the OFA supernet; default: read from the checkpoint.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
) -> None:
    """Import a published Once-for-All supernet; on any problem nothing is written."""
    from gtn_deploy.supernet.ofa_import import import_supernet  # lazy: CLI start-up

    result = import_supernet(source, checkpoint, out, variant, overwrite)
    typer.echo(f"imported {result.tensors} tensors ({source} {result.variant}, space "
               f"{result.space}, sha256 {result.sha256[:12]}...) -> {result.path}")
