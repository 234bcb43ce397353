"""A small progress bar on stderr: loss, accuracy, images/s and ETA.

On a terminal it redraws one line (at most 5 times a second); otherwise it prints a plain
line every ``every`` steps, so logs stay readable.
"""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    def __init__(self, total_steps: int, enabled: bool = True, every: int = 20, stream=None):
        self.total, self.enabled, self.every = total_steps, enabled, max(1, every)
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.done_at_start: int | None = None
        self.images = 0
        self._last_draw = 0.0

    def update(self, step: int, epoch: int, images: int, **values: float) -> None:
        """``step`` is the global step just finished (1-based)."""
        if not self.enabled:
            return
        if self.done_at_start is None:
            self.done_at_start = step - 1
        self.images += images
        now = time.perf_counter()
        if self.tty and now - self._last_draw < 0.2 and step < self.total:
            return
        if not self.tty and step % self.every and step < self.total:
            return
        self._last_draw = now
        elapsed = now - self.start
        rate = (step - self.done_at_start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else 0.0
        shown = " ".join(f"{k} {v:.4f}" if k == "loss" else f"{k} {v:.3f}"
                         for k, v in values.items())
        line = (f"epoch {epoch + 1} step {step}/{self.total} {shown} "
                f"{self.images / elapsed if elapsed > 0 else 0:.0f} img/s "
                f"elapsed {_clock(elapsed)} eta {_clock(eta)}")
        if self.tty:
            self.stream.write("\r" + line.ljust(110)[:160])
            if step >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if self.enabled:
            self.stream.write(("\n" if self.tty else "") + text + "\n")
            self.stream.flush()
