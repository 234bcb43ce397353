"""What every command shares: GtnErrors and OS errors as one line and an exit code, and the
options that several commands take (``--holdout``, ``--host`` and its ssh options)."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Callable, TypeVar

import typer

from gtn_deploy.bench.remote import SshTarget
from gtn_deploy.errors import GtnError, UsageError
from gtn_deploy.io_utils import path_problem

F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print one error line to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def user_errors(func: F) -> F:
    """Show a GtnError as ``error: <message>`` and exit with its code, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except GtnError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except OSError as exc:  # one not met where the path is known: name what the OS names
            raise fail(os_error_line(exc), 1) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper  # type: ignore[return-value]


def os_error_line(exc: OSError) -> str:
    """``<path>: <problem>`` for an OSError that escaped the library's own checks."""
    if not isinstance(exc.filename, (str, bytes, os.PathLike)):  # None, or a descriptor
        return exc.strerror or str(exc)
    names = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 else "")
    return f"{names}: {path_problem(exc.filename, exc)}"


def split_csv(values: list[str] | None) -> list[str]:
    """``--device a,b --device c`` -> ``[a, b, c]``."""
    out: list[str] = []
    for value in values or []:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out


def holdout_option(help: str):
    """``--holdout N``: a number of held-out subnets, in every command that has one.

    Read as a float so that a share (``0.2``, predictor fit's old form) gets a clear error
    from ``holdout_count`` rather than click's "not a valid integer"."""
    return typer.Option("--holdout", metavar="N", help=help)


def holdout_count(holdout: float, samples: int) -> int:
    """``--holdout`` as a whole number of subnets; a share or a fraction is one error line."""
    if math.isfinite(holdout) and holdout >= 0 and holdout == int(holdout):
        return int(holdout)
    meant = ""
    if 0 < holdout < 1:
        meant = (f"; for a share of {holdout:g} of --samples {samples} give --holdout "
                 f"{round(holdout * samples)}")
    raise UsageError(f"--holdout counts subnets (a whole number >= 0), got {holdout:g}{meant}")


# -- --host: one set of ssh options for every command that runs on another machine ----------

def host_option(help: str):
    """``--host USER@HOST[:PORT]``: run there over the system ssh."""
    return typer.Option(metavar="USER@HOST[:PORT]", help=help)


def remote_python_option():
    return typer.Option(help="With --host: the python to run there (needs numpy and "
                        "onnxruntime, not gtn_deploy).")


def identity_option():
    return typer.Option(help="With --host: the SSH private key (ssh -i).")


def ssh_option_option():
    return typer.Option(metavar="KEY=VALUE", help="With --host: an ssh -o option; repeatable.")


def insecure_host_key_option():
    return typer.Option(help="With --host: do not check the host key against known_hosts "
                        "(recorded).")


def ssh_target(host: str, identity: Path | None, ssh_options: list[str] | None,
               insecure_host_key: bool):
    """The ``--host`` options as a ``bench.remote.SshTarget``; a bad one is a UsageError."""
    if identity is not None and not identity.is_file():
        raise UsageError(f"--identity {identity}: no such key file")
    return SshTarget.parse(host, identity=identity, options=tuple(ssh_options or ()),
                           insecure_host_key=insecure_host_key)
