"""Progress a person sees in every setting: the rich bar on a terminal, plain log lines everywhere else.

A job under SLURM, ``nohup``, CI or a pipe has no terminal, so the rich bar draws nothing there; this callback
then writes one line every ``every_seconds`` to the log (stderr and the run's train.log): step, loss,
tokens/s, elapsed time and the time left — against the budget when the run has one, else against
``trainer.max_steps`` at the current rate.
"""

from __future__ import annotations

import logging
import sys
import time

import pytorch_lightning as pl

from encoderlab.training.budget import budget_of
from encoderlab.validate import check, positive

log = logging.getLogger("encoderlab")


def clock(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class PlainProgress(pl.Callback):
    """One log line every ``every_seconds`` while training, when stderr is not a terminal (``always``:
    on a terminal too)."""

    def __init__(self, every_seconds: float = 30.0, always: bool = False) -> None:
        check("callbacks.plain_progress.every_seconds", every_seconds, positive)
        self.every_seconds = float(every_seconds)
        self.enabled = always or not sys.stderr.isatty()
        self._started: float | None = None
        self._last: float | None = None
        self._first_step = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = self._last = time.perf_counter()
        self._first_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled or not trainer.is_global_zero:
            return
        now = time.perf_counter()
        if now - self._last < self.every_seconds:
            return
        self._last = now
        log.info("%s", self.line(trainer, now - self._started))

    def line(self, trainer: pl.Trainer, seconds: float) -> str:
        step = trainer.global_step
        metrics = trainer.callback_metrics
        parts = [f"step {step:,}" + (f"/{trainer.max_steps:,}" if trainer.max_steps > 0 else "")]
        if "train/loss" in metrics:
            parts.append(f"loss {float(metrics['train/loss']):.4f}")
        if "train/tokens_per_s" in metrics:
            parts.append(f"{float(metrics['train/tokens_per_s']):,.0f} tokens/s")
        parts.append(f"elapsed {clock(seconds)}")
        left = self._seconds_left(trainer, step, seconds)
        if left is not None:
            parts.append(f"ETA {clock(left[0])}{left[1]}")
        return " | ".join(parts)

    def _seconds_left(self, trainer: pl.Trainer, step: int, seconds: float) -> tuple[float, str] | None:
        budget = budget_of(trainer)
        if budget is not None:
            done = budget.fraction
            if done > 0:
                return budget.elapsed() * (1 - done) / done, " (budget)"
        steps_done = step - self._first_step
        if trainer.max_steps > 0 and steps_done > 0:
            return (trainer.max_steps - step) * seconds / steps_done, ""
        return None
