"""Atomic writes and hashing: an artifact is either absent or complete, never half-written.

An OS error on a user's path (a folder where a file belongs, a file where a folder belongs,
no permission, a read-only or full filesystem) becomes a one-line PathError naming that
path, never the temporary name it was written under.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from gtn_deploy.errors import GtnError, PathError


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _default_file_mode() -> int:
    # mkstemp creates 0600 files; artifacts get the mode a plain open() would give them.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def path_problem(path: str | os.PathLike, exc: OSError) -> str:
    """What went wrong with ``path``, in words, for an error line."""
    path = Path(path)
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                return f"{ancestor} is a file, not a folder"
            if exc.errno == errno.ENOENT:  # the folder exists but takes no new entries (/proc)
                return f"cannot create anything in {ancestor}"
            break
    return exc.strerror or str(exc)


def _write_error(path: Path, exc: OSError) -> PathError:
    return PathError(f"cannot write {path}: {path_problem(path, exc)}")


def _check_not_folder(path: Path) -> None:
    if path.is_dir():
        raise PathError(f"cannot write {path}: it is a folder; give a file name")


def open_plain_file(path: str | os.PathLike, flags: int, what: str = "file") -> int:
    """``os.open`` a file that is written in place (a lock, an append-only log) and refuse
    anything but a plain regular file of its own: a planted symbolic link, hard link, FIFO
    or device would make the write land outside the folder (or hang). Returns the fd."""
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PathError(f"{path} is a symbolic link; the {what} must be a regular file "
                            "(remove the link)") from None
        raise _write_error(path, exc) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        kind = "a hard link to another file" if stat.S_ISREG(info.st_mode) else \
            "not a regular file"
        raise PathError(f"{path} is {kind}; the {what} must be a plain file (remove it)")
    return fd


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    Any OS error is a PathError naming ``path``; the previous file, if any, is kept."""
    path = Path(path)
    _check_not_folder(path)
    try:
        _replace_with(path, data)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    return path


def _replace_with(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _default_file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove a file can be written in it (then removed), so a
    long run fails at once rather than at its first checkpoint."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if path.exists() and not path.is_dir():
            raise PathError(f"cannot write into {path}: it is a file, not a folder") from exc
        raise PathError(f"cannot write into {path}: {path_problem(path / 'x', exc)}") from exc
    return path


def read_regular_file(path: str | os.PathLike, max_bytes: int, what: str = "file",
                      error: type[GtnError] = PathError) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; anything else (missing, a
    folder, a device such as /dev/zero, a FIFO, a bigger file) raises ``error``, one line."""
    path = Path(path)
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {path_problem(path, exc)}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise error(f"{what} {path} is {kind}; give a file")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise error(f"{what} {path} is larger than {max_bytes // 1024} KiB; refused")
    return data


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; rename it into place if the block succeeds.

    On failure the temporary folder is removed, so ``final`` is either untouched or complete.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    except OSError as exc:
        raise _write_error(final, exc) from exc
    try:
        yield tmp
        if final.exists() and not overwrite:
            raise PathError(f"{final} already exists")
        try:
            _move_into_place(tmp, final)
        except OSError as exc:
            raise _write_error(final, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, final: Path) -> None:
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(final.parent)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output_file(path: str | os.PathLike | None, folder: bool = False) -> None:
    """Refuse at once an output path that cannot work (a folder where a file goes, a file
    where a folder goes, a path under a file), before any long work and without writing;
    other faults (permissions, a full disk) show when it is written."""
    if path is None:
        return
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise PathError(f"cannot write into {path}: it is a file, not a folder")
    if not folder:
        _check_not_folder(path)
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise PathError(f"cannot write {path}: {ancestor} is a file, not a folder")
            return


def _same_or_inside(out: Path, source: Path) -> bool:
    """``out`` is ``source`` (through any link) or lies inside the folder ``source``."""
    out_real, src_real = Path(os.path.realpath(out)), Path(os.path.realpath(source))
    return out_real == src_real or (src_real.is_dir() and src_real in out_real.parents)


def check_outputs_apart(outputs: dict[str, str | os.PathLike | None],
                        inputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse an output that is one of the command's inputs (or inside an input folder, such
    as a bundle), or two outputs naming one file: writing it would destroy what was read,
    or the second write would replace the first."""
    given = {flag: Path(p) for flag, p in outputs.items() if p is not None}
    for flag, out in given.items():
        for what, source in inputs.items():
            if source is not None and Path(source).exists() and _same_or_inside(out, Path(source)):
                raise PathError(f"{flag} {out} would overwrite {what} {source}, an input of "
                                "this command; write it elsewhere")
    flags = list(given)
    for i, a in enumerate(flags):
        for b in flags[i + 1:]:
            if os.path.realpath(given[a]) == os.path.realpath(given[b]):
                raise PathError(f"{a} and {b} name the same file {given[a]}; give two paths")


def check_replaces_own_kind(path: str | os.PathLike | None, flag: str, what: str,
                            is_kind: Callable[[Any], bool]) -> None:
    """Refuse to replace an existing file that is not ``what`` (``is_kind`` of its JSON is
    false): a stray path would lose someone's file. An empty file may be replaced."""
    if path is None or not Path(path).is_file() or Path(path).stat().st_size == 0:
        return
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read(64 << 20))
    except (OSError, ValueError, RecursionError):
        doc = None
    if not is_kind(doc):
        raise PathError(f"{flag} {path} exists and is not {what}; refusing to replace it "
                        "(remove it or choose another path)")
