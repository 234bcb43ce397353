"""What every command shares: turning GtnErrors into one line and an exit code."""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import typer

from gtn_deploy.errors import GtnError

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
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper  # type: ignore[return-value]


def split_csv(values: list[str] | None) -> list[str]:
    """``--device a,b --device c`` -> ``[a, b, c]``."""
    out: list[str] = []
    for value in values or []:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out
