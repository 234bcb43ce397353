"""Running meters of an epoch and the metrics.jsonl log (rank 0 writes it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gtn_deploy.io_utils import open_plain_file


class Meters:
    """Sums over the steps of the current epoch; exact floats, so a resume can restore them."""

    FIELDS = ("n", "loss", "ce", "correct", "branch", "reward", "reward_steps", "steps",
              "clipped_teacher", "clipped_student")

    def __init__(self, teacher: bool = True) -> None:
        """``teacher``: a teacher's meters (its CE, the branch terms, the sampler's reward,
        clipping); a student's report its loss, CE and accuracy only."""
        self.teacher = teacher
        self.sums = {k: 0.0 for k in self.FIELDS}

    def add(self, stats: dict[str, float]) -> None:
        n = stats["n"]
        self.sums["n"] += n
        self.sums["correct"] += stats["correct"]
        for key in ("loss", "ce", "branch"):
            self.sums[key] += stats.get(key, 0.0) * n
        if "reward" in stats:
            self.sums["reward"] += stats["reward"]
            self.sums["reward_steps"] += 1
        self.sums["steps"] += 1
        for key in ("clipped_teacher", "clipped_student"):
            self.sums[key] += stats.get(key, 0.0)

    def mean(self, key: str) -> float:
        return self.sums[key] / self.sums["n"] if self.sums["n"] else 0.0

    def accuracy(self) -> float:
        return 100.0 * self.sums["correct"] / self.sums["n"] if self.sums["n"] else 0.0

    def summary(self) -> dict[str, Any]:
        if not self.teacher:
            return {"loss": self.mean("loss"), "ce": self.mean("ce"),
                    "train_acc": self.accuracy()}
        out = {"loss": self.mean("loss"), "teacher_ce": self.mean("ce"),
               "train_acc": self.accuracy(), "branch_loss": self.mean("branch")}
        if self.sums["reward_steps"]:
            out["kl_a"] = self.sums["reward"] / self.sums["reward_steps"]
        if self.sums["steps"]:  # share of steps whose gradient norm was clipped, per group
            out["clipped_teacher"] = self.sums["clipped_teacher"] / self.sums["steps"]
            out["clipped_student"] = self.sums["clipped_student"] / self.sums["steps"]
        return out

    def state_dict(self) -> dict[str, float]:
        return dict(self.sums)

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.sums = {k: float(state.get(k, 0.0)) for k in self.FIELDS}


class MetricsLog:
    """Append-only JSON lines; ``truncate`` rewinds it to a checkpoint's length on resume."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def truncate(self, size: int) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_plain_file(self.path, os.O_RDWR | os.O_CREAT, "metrics log")
        with os.fdopen(fd, "r+b") as fh:
            # never grow the file: truncate() past the end would pad it with NUL bytes
            fh.truncate(min(size, fh.seek(0, os.SEEK_END)))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        fd = open_plain_file(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, "metrics log")
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]
