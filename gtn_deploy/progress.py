"""Progress for every long loop: rich bars with an ETA on a terminal, plain lines off one.

One live display per process (rich allows only one): a stage list on top, when the pipeline
runs, and the bars of the loops running now below it. Off a terminal there are no bars:
step loops print a plain line every ``every`` steps, so logs stay readable, and the stage
list prints nothing (the pipeline logs its own lines). A job of named steps (``Steps``, the
export's gates) draws a bar of its steps and one for each loop inside them; off a terminal it
prints one plain line per finished step. ``gtnd -q`` silences all of them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

LOGGER = "gtn_deploy"


def quiet() -> bool:
    """``gtnd -q`` raised the package logger above INFO (library use leaves it unset)."""
    return logging.getLogger(LOGGER).level > logging.INFO


def console(stream=None):
    """A rich console on ``stream`` (default: stderr, looked up at each write)."""
    from rich.console import Console

    return Console(file=stream, stderr=stream is None)


def interactive(stream=None) -> bool:
    """Bars only where someone watches: a terminal (not a pipe, a file, CI or a test)."""
    return not quiet() and console(stream).is_terminal


def setup_logging(verbosity: int) -> None:
    """The CLI's ``-v``/``-q``: -1 warnings only and no progress, 0 info, 1 and up debug."""
    from rich.logging import RichHandler
    from rich.text import Text

    class Handler(RichHandler):
        def render(self, *, record, traceback, message_renderable):
            if verbosity > 0:  # time, level and source beside each line
                return super().render(record=record, traceback=traceback,
                                      message_renderable=message_renderable)
            if record.levelno > logging.INFO:  # plain lines, but a warning says what it is
                message_renderable = Text(f"{record.levelname.lower()}: ") + message_renderable
            return message_renderable

    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, RichHandler)]:
        logger.removeHandler(handler)  # a second CLI call in one process (tests) replaces it
    logger.addHandler(Handler(console=console(), markup=False, highlighter=None))
    logger.setLevel(level)
    logger.propagate = False


# -- the one live display ---------------------------------------------------------------------
@dataclass
class _Stage:
    name: str
    status: str = "pending"  # pending, running, cached, done, failed
    started: float = 0.0
    seconds: float | None = None


_MARKS = {"pending": "[dim]·[/]", "running": "[bold yellow]▶[/]", "cached": "[green]✓[/]",
          "done": "[green]✓[/]", "failed": "[bold red]✗[/]"}


def _board_class():
    from rich.console import Group
    from rich.progress import Progress
    from rich.table import Table
    from rich.text import Text

    class Board(Progress):
        """rich's Progress with the stage list drawn above its bars."""

        stages: list[_Stage] = []

        def get_renderables(self):
            tasks = self.make_tasks_table(self.tasks)
            if not self.stages:
                yield tasks
                return
            table = Table.grid(padding=(0, 1))
            for s in self.stages:
                seconds = time.perf_counter() - s.started if s.status == "running" else s.seconds
                when = "" if seconds is None else _clock(seconds)
                # Text, not markup strings: a message printed with markup off would show them
                table.add_row(Text.from_markup(_MARKS[s.status]), Text(s.name),
                              Text(s.status, style="dim"), Text(when))
            yield Group(table, tasks)

    return Board


def _eta_column():
    """The "eta 0:01:23" column; empty for a task added with ``eta=False``: a list of unlike
    steps, where a rate of steps per second would promise a time nobody can know."""
    from rich.progress import TimeRemainingColumn
    from rich.text import Text

    class Eta(TimeRemainingColumn):
        def render(self, task):
            if not task.fields.get("eta", True):
                return Text("")
            return Text.assemble("eta ", super().render(task))

    return Eta()


_board = None
_users = 0


@contextlib.contextmanager
def _live(stream=None) -> Iterator:
    """The shared display, started by its first user (on its stream) and stopped by its last."""
    global _board, _users
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    if _board is None:
        _board = _board_class()(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), _eta_column(),
            console=console(stream), redirect_stdout=False)
        _board.stages = []
        _board.start()
    _users += 1
    try:
        yield _board
    finally:
        _users -= 1
        if _users == 0:
            _board.stop()
            _board = None


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


# -- step loops (teacher training, distillation) ------------------------------------------------
class StepProgress:
    """Steps of a training loop: loss, accuracy, images/s and ETA.

    A bar on a terminal; otherwise a plain line every ``every`` steps. Use it as a context
    manager so that the bar goes away when the loop fails; it also closes at its last step.
    """

    def __init__(self, total_steps: int, enabled: bool = True, every: int = 20, stream=None,
                 description: str = "train", cycle: str = "epoch", item: str = "img",
                 every_s: float | None = None):
        """``cycle`` and ``item`` name what ``update`` counts: epochs of images when
        training, rounds of calls when calibrate times subnets. ``every_s``: off a
        terminal, a line (named by ``description``) at the first step, then every
        ``every_s`` seconds whatever the steps take, instead of every ``every`` steps."""
        self.total, self.every, self.every_s = total_steps, max(1, every), every_s
        self._last_line: float | None = None
        self.cycle, self.item = cycle, item
        self.enabled = enabled and not quiet()
        self.stream = stream
        self.live = self.enabled and interactive(stream)
        self.description = description
        self.start = time.perf_counter()
        self.done_at_start: int | None = None
        self.images = 0
        self._stack: contextlib.ExitStack | None = None
        self._board = self._task = None

    def __enter__(self) -> "StepProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, step: int, epoch: int, images: int, **values: float) -> None:
        """``step`` is the global step just finished (1-based)."""
        if not self.enabled:
            return
        if self.done_at_start is None:
            self.done_at_start = step - 1
            if self.live:
                self._open(step - 1)
        self.images += images
        elapsed = time.perf_counter() - self.start
        shown = " ".join(f"{k} {v:.4f}" if k == "loss" else f"{k} {v:.3f}"
                         for k, v in values.items())
        rate = f"{self.images / elapsed if elapsed > 0 else 0:.0f} {self.item}/s"
        if self.live:
            self._board.update(self._task, completed=step,
                               stats=f"{self.cycle} {epoch + 1} {shown} {rate}")
            if step >= self.total:
                self.close()
            return
        if not self._line_due(step):
            return
        done = step - self.done_at_start
        eta = (self.total - step) * elapsed / done if done > 0 else 0.0
        name = f"{self.description}: " if self.every_s is not None else ""
        self._write(f"{name}{self.cycle} {epoch + 1} step {step}/{self.total} {shown} {rate} "
                    f"elapsed {_clock(elapsed)} eta {_clock(eta)}")

    def _line_due(self, step: int) -> bool:
        """Off a terminal: the last step always; else every ``every`` steps, or with
        ``every_s`` the first step and then one line per ``every_s`` seconds."""
        if step >= self.total:
            return True
        if self.every_s is None:
            return step % self.every == 0
        now = time.perf_counter()
        if self._last_line is not None and now - self._last_line < self.every_s:
            return False
        self._last_line = now
        return True

    def message(self, text: str) -> None:
        """A line above the bar (or a plain line)."""
        if not self.enabled:
            return
        if self._task is not None:
            self._board.console.print(text, markup=False, highlight=False)
        else:
            self._write(text)

    def close(self) -> None:
        if self._stack is not None:
            if _users > 1:  # the stage list stays; alone, the finished bar stays on screen
                self._board.remove_task(self._task)
            self._stack.close()
            self._stack = self._task = None

    def _open(self, completed: int) -> None:
        self._stack = contextlib.ExitStack()
        self._board = self._stack.enter_context(_live(self.stream))
        self._task = self._board.add_task(self.description, total=self.total,
                                          completed=completed, stats="")

    def _write(self, line: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()


# -- the pipeline's stage list ----------------------------------------------------------------
class StageList:
    """The pipeline's stages with the current one live; nothing off a terminal."""

    def __init__(self, names: list[str], stream=None):
        self.live, self.stream = interactive(stream), stream
        self.stages = {name: _Stage(name) for name in names}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "StageList":
        if self.live:
            board = self._stack.enter_context(_live(self.stream))
            board.stages = list(self.stages.values())
            self._board = board
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()  # the last frame, with every stage's status, stays on screen

    def running(self, name: str) -> None:
        self._set(name, "running", started=time.perf_counter())

    def finished(self, name: str, status: str, seconds: float | None = None) -> None:
        self._set(name, status, seconds=seconds)

    def _set(self, name: str, status: str, **fields) -> None:
        stage = self.stages.get(name)
        if stage is None:  # a stage nobody listed in advance still shows up
            stage = self.stages[name] = _Stage(name)
            if self.live:
                self._board.stages = list(self.stages.values())
        stage.status = status
        for key, value in fields.items():
            setattr(stage, key, value)


# -- a job of named steps (the export's gates) -------------------------------------------------
@dataclass
class Step:
    """The step running now: set ``note`` (and ``status``) to say how it went."""

    name: str
    note: str = ""
    status: str = "done"


_STEP_MARKS = {"done": ("✓ ", "green"), "passed": ("✓ ", "green"),
               "failed": ("✗ ", "bold red")}


class Steps:
    """A job made of a few named steps, such as the export's gates, and the loops inside them.

    On a terminal: a bar of the steps that names the running one, a bar with an ETA for each
    loop inside a step (``bar``) and a line per finished step above them; inside the pipeline
    they join its display. Off a terminal: one plain line per finished step, no bars.
    ``enabled=False`` or ``gtnd -q``: nothing. Not entered, it is silent too.
    """

    def __init__(self, title: str, names: Sequence[str] = (), enabled: bool = True,
                 stream=None):
        self.title, self.names, self.stream = title, list(names), stream
        self.enabled = enabled and not quiet()
        self.live = self.enabled and interactive(stream)
        self.finished = 0
        self._entered = False
        self._stack = contextlib.ExitStack()
        self._board = self._task = None
        self._failed: str | None = None

    def __enter__(self) -> "Steps":
        self._entered = True
        if self.live:
            self._board = self._stack.enter_context(_live(self.stream))
            self._task = self._board.add_task(self.title, total=len(self.names) or None,
                                              stats="", eta=False)
        return self

    def __exit__(self, *exc) -> None:
        self._entered = False
        if self._task is not None:
            if _users > 1:  # inside the pipeline's display: its stage list says the rest
                self._board.remove_task(self._task)
            else:  # alone, the finished bar stays on screen and says how the job ended
                end = f"failed at {self._failed}" if self._failed else "done"
                self._board.update(self._task, description=f"{self.title}: {end}")
            self._task = None
        self._stack.close()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Step]:
        """Run one step; it is reported done, or failed when the block raises."""
        if name not in self.names:  # a step nobody listed in advance still counts
            self.names.append(name)
        step, start = Step(name), time.perf_counter()
        if self._task is not None:
            self._board.update(self._task, description=f"{self.title}: {name}",
                               total=len(self.names), refresh=True)
        try:
            yield step
        except BaseException:
            step.status, self._failed = "failed", name
            raise
        finally:
            self.finished += 1
            self._report(step, time.perf_counter() - start)

    @contextlib.contextmanager
    def bar(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A bar with an ETA for a loop inside a step; yields ``advance(n)``. No bar, and no
        line, off a terminal: the step's own line says how it went."""
        if self._task is None or total <= 0:
            yield _ignore
            return
        task = self._board.add_task(f"  {description}", total=total, stats="")
        try:
            yield lambda n=1: self._board.advance(task, n)
        finally:
            self._board.remove_task(task)
            self._board.refresh()

    def _report(self, step: Step, seconds: float) -> None:
        if not (self.enabled and self._entered):
            return
        line = (f"{self.title} {self.finished}/{len(self.names)} {step.name}: {step.status}"
                + (f", {step.note}" if step.note else "") + f" ({seconds:.1f} s)")
        if self._task is None:
            stream = self.stream or sys.stderr
            stream.write(line + "\n")
            stream.flush()
            return
        from rich.text import Text

        # refreshed first: a printed line redraws the display as it was last refreshed
        self._board.update(self._task, completed=self.finished, refresh=True)
        mark = _STEP_MARKS.get(step.status, ("! ", "bold yellow"))  # e.g. a gate let through
        self._board.console.print(Text.assemble(mark, line), highlight=False)


def _ignore(n: int = 1) -> None:
    """``advance`` where no bar is drawn."""
