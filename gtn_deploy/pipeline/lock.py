"""One pipeline per output folder: a second one refuses instead of corrupting the first."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from gtn_deploy.errors import GtnError, PathError
from gtn_deploy.io_utils import open_plain_file, path_problem


class RunLocked(GtnError):
    exit_code = 3


class RunLock:
    """An exclusive ``flock`` on ``<out>/.lock``; released by the OS if the process dies."""

    def __init__(self, out: Path):
        self.path = Path(out) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a read-only mount, a file where the folder belongs, ...
            raise PathError(f"cannot write {self.path.parent}: "
                            f"{path_problem(self.path, exc)} (the run folder holds the "
                            "lock, stages and report)") from None
        # a planted link must not make us truncate and overwrite a file elsewhere
        fd = open_plain_file(self.path, os.O_RDWR | os.O_CREAT, "run folder's lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLocked(f"another pipeline is writing to {self.path.parent} ({holder}); "
                            "wait for it to finish or use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info.get('pid', '?')} since {info.get('since', '?')}"
    except (OSError, ValueError):
        return "holder unknown"
