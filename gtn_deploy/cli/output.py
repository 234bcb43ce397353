"""``--json`` output: one JSON document on stdout and nothing else there."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from typing import Any, Iterator

import typer


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[None]:
    """While a ``--json`` command works, whatever else is printed goes to stderr.

    Python-level writes are redirected, and so is file descriptor 1 where stdout has one:
    native libraries (onnxruntime, NNCF's helpers) write there directly.
    """
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = fd = None
    with contextlib.suppress(AttributeError, OSError, ValueError, io.UnsupportedOperation):
        fd, err_fd = sys.stdout.fileno(), sys.stderr.fileno()
        saved = os.dup(fd)
        os.dup2(err_fd, fd)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            os.dup2(saved, fd)
            os.close(saved)


def print_json(document: Any) -> None:
    """The command's result: snake_case keys, units in key names, numbers as numbers."""
    typer.echo(json.dumps(document, indent=2))
