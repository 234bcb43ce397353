"""Resumable, incremental stages: each output folder is keyed by a hash of its inputs.

A stage's folder is built in a temporary folder and renamed into place only when the stage
finished, with a ``_stage.json`` marker holding its inputs. A rerun skips every stage whose
folder exists for the same inputs, so a killed run continues from the last finished stage,
and a changed input (a device added or edited) re-runs only the stages that depend on it.
Long stages (training) build in a persistent ``.work-*`` folder instead and resume from their
own checkpoints; other leftovers of a killed run are swept on the next start.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gtn_deploy.io_utils import atomic_dir, atomic_write_json, sha256_file

MARKER = "_stage.json"
MAX_MARKER_BYTES = 16 << 20


def input_hash(inputs: dict[str, Any]) -> str:
    """Short, stable hash of a stage's inputs (canonical JSON)."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class StageResult:
    name: str
    path: Path
    ran: bool
    seconds: float

    def marker(self) -> dict:
        return read_marker(self.path)


class StageStore:
    """The stage folders of one pipeline run: ``<root>/stages/<name>-<hash>/``."""

    def __init__(self, root: Path, create: bool = True,
                 log: Callable[[str], None] = lambda line: None):
        self.root = Path(root) / "stages"
        self.log = log  # where a damaged stage is reported before it re-runs
        if create:  # a dry run only looks: it makes no folder
            self.root.mkdir(parents=True, exist_ok=True)

    def sweep(self) -> list[Path]:
        """Remove temporary folders a killed run left behind (never a finished stage)."""
        leftovers = [p for p in self.root.iterdir()
                     if p.name.startswith(".") and p.name.endswith((".tmp", ".old"))]
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
        return leftovers

    def path(self, name: str, inputs: dict[str, Any]) -> Path:
        return self.root / f"{name}-{input_hash(inputs)}"

    def is_done(self, name: str, inputs: dict[str, Any]) -> bool:
        """The stage finished and its outputs are as it left them."""
        final = self.path(name, inputs)
        return (final / MARKER).is_file() and damage(final) is None

    @staticmethod
    def work_folder(final: Path) -> Path:
        """Where a resumable stage builds (and a killed one left its checkpoints)."""
        return final.with_name(f".work-{final.name}")

    def run(self, name: str, inputs: dict[str, Any], build: Callable[[Path], dict | None],
            resumable: bool = False) -> StageResult:
        """Return the finished stage folder, building it with ``build(folder)`` if needed.

        ``build`` writes its outputs into the folder it is given and may return a dict of
        figures that the marker records for the report. A ``resumable`` stage gets the same
        work folder again after a kill, so it can continue from its checkpoints.
        """
        final = self.path(name, inputs)
        if (final / MARKER).is_file():
            problem = damage(final)
            if problem is None:
                return StageResult(name, final, False, read_marker(final).get("seconds", 0.0))
            self.log(f"{name}: {problem}; re-running the stage")
        if final.exists():  # a folder without its (intact) marker is not a finished stage
            shutil.rmtree(final)
        start = time.perf_counter()
        if resumable:
            work = self.work_folder(final)
            work.mkdir(parents=True, exist_ok=True)
            self._finish(work, name, inputs, build(work), start)
            os.replace(work, final)
        else:
            with atomic_dir(final) as tmp:
                self._finish(tmp, name, inputs, build(tmp), start)
        return StageResult(name, final, True, time.perf_counter() - start)

    @staticmethod
    def _finish(folder: Path, name: str, inputs: dict, figures: dict | None,
                start: float) -> None:
        atomic_write_json(folder / MARKER, {
            "stage": name, "inputs": inputs, "seconds": round(time.perf_counter() - start, 3),
            "figures": figures or {}, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "outputs": output_hashes(folder)})


def output_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file the stage left (its marker aside), by path in the folder."""
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER}


def read_marker(final: Path) -> dict[str, Any]:
    """The stage's marker, or {} when it is not a readable JSON object."""
    try:
        doc = json.loads((final / MARKER).read_bytes()[:MAX_MARKER_BYTES])
    except (OSError, ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def damage(final: Path) -> str | None:
    """What is wrong with a finished stage folder, or None: a marker that does not read, an
    output missing or changed since the stage wrote it (markers from before the hashes
    were recorded are taken as they are)."""
    marker = read_marker(final)
    if not marker or not isinstance(marker.get("seconds", 0.0), (int, float)):
        return f"its {MARKER} is damaged"
    outputs = marker.get("outputs")
    if outputs is None:
        return None
    if not isinstance(outputs, dict):
        return f"its {MARKER} is damaged"
    for rel, digest in sorted(outputs.items()):
        file = final / rel
        if file.is_symlink() or not file.is_file():
            return f"its output {rel} is missing"
        if sha256_file(file) != digest:
            return f"its output {rel} changed since the stage wrote it"
    return None
