"""Progress of an embedding job, counted in texts: rich's bar on a terminal, plain lines everywhere else.

A job under SLURM, ``nohup``, CI or a pipe has no terminal, where a bar draws nothing useful; there one line
goes to stderr every ``every_seconds`` (texts done, texts/s, elapsed, time left), as training's plain
progress does (:mod:`encoderlab.training.progress`).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from encoderlab.training.progress import clock


class Progress:
    """``with Progress(total, enabled) as progress: ... progress.advance(n)``; nothing at all when not
    ``enabled``."""

    def __init__(
        self, total: int, enabled: bool, every_seconds: float = 30.0, stream: TextIO | None = None
    ) -> None:
        self.total = total
        self.enabled = enabled and total > 0
        self.every_seconds = every_seconds
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._bar = None
        self._task = None
        self._started = self._last = 0.0
        self._lines = 0

    def __enter__(self) -> Progress:
        self._started = self._last = time.perf_counter()
        if self.enabled and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            columns = ("embedding", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            self._bar = Bar(*columns, console=Console(file=self.stream), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("embedding", total=self.total)
        return self

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
            return
        now = time.perf_counter()
        # A job short enough to need no line gets none; a longer one also gets its last.
        if now - self._last >= self.every_seconds or (self.done == self.total and self._lines):
            self._last = now
            self._lines += 1
            print(self.line(now - self._started), file=self.stream, flush=True)

    def line(self, seconds: float) -> str:
        rate = self.done / seconds if seconds > 0 else 0.0
        parts = [
            f"embedded {self.done:,}/{self.total:,} texts",
            f"{rate:,.0f} texts/s",
            f"elapsed {clock(seconds)}",
        ]
        if rate > 0 and self.done < self.total:
            parts.append(f"ETA {clock((self.total - self.done) / rate)}")
        return " | ".join(parts)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
