"""A training budget: wall-clock minutes and/or tokens, which stops the run and paces its schedule.

``budget.minutes=10`` (and/or ``budget.tokens=N``) ends training when the budget is spent, and the learning-rate
schedule runs on the fraction of the budget spent instead of on a step count: warm-up and decay are fractions
of the budget, so a run that stops at its budget has finished its decay, on a fast or a slow machine
(cramming's budget-aware schedules). ``trainer.max_steps`` still caps the run when it is set; the schedule
then follows whichever of steps and budget is further along.

Wall-clock time counts from the first training batch and includes validation, as a person with a stopwatch
would. The spent budget is part of every checkpoint, so a resumed run continues where it stopped. A token
budget is exact across resume and machines; a time budget, by nature, is not (a slower machine takes fewer
steps).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytorch_lightning as pl
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from encoderlab.errors import UserError
from encoderlab.training.throughput import real_tokens
from encoderlab.validate import at_least, check, positive

# The schedule is built for this many virtual steps and read at ``fraction × RESOLUTION``: every schedule
# factory (``factory(optimizer, total_steps=N)``) keeps its own shape without knowing about budgets.
RESOLUTION = 100_000


class Budget(pl.Callback):
    """Stops training at ``minutes`` of wall-clock time or ``tokens`` real (non-padding) tokens, whichever
    comes first, and reports how much of it was spent (``budget/*`` in metrics.json)."""

    def __init__(self, minutes: float | None = None, tokens: int | None = None) -> None:
        check("budget.minutes", minutes, positive, optional=True)
        check("budget.tokens", tokens, at_least(1), optional=True)
        self.seconds = None if minutes is None else 60.0 * float(minutes)
        self.tokens = None if tokens is None else int(tokens)
        self.spent_seconds = 0.0  # before the current process (from the checkpoint on resume)
        self.seen_tokens = 0
        self.stopped_by_budget = False
        self._since: float | None = None
        self._fraction = 0.0  # the synchronised value the schedule reads (one per optimizer step)

    @property
    def active(self) -> bool:
        return self.seconds is not None or self.tokens is not None

    # ---------------------------------------------------------------------------------------- accounting
    def elapsed(self) -> float:
        running = 0.0 if self._since is None else time.perf_counter() - self._since
        return self.spent_seconds + running

    @property
    def fraction(self) -> float:
        """The fraction of the budget spent at the last optimizer step (what the schedule runs on)."""
        return self._fraction

    def _budget_fraction(self) -> float:
        """How much of the budget itself (time, tokens) is spent."""
        parts = [0.0]
        if self.seconds is not None:
            parts.append(self.elapsed() / self.seconds)
        if self.tokens is not None:
            parts.append(self.seen_tokens / self.tokens)
        return min(1.0, max(parts))

    def _shared(self, trainer, value):
        # One clock for every process: the learning rate, and the step at which all of them stop, are rank
        # 0's, so the replicas stay identical.
        return trainer.strategy.broadcast(value, src=0) if trainer.world_size > 1 else value

    def _schedule_fraction(self, trainer, steps: int) -> float:
        """The further along of the budget and of ``trainer.max_steps`` (when set), after ``steps`` steps."""
        by_steps = steps / trainer.max_steps if trainer.max_steps > 0 else 0.0
        return self._shared(trainer, min(1.0, max(self._budget_fraction(), by_steps)))

    def on_train_start(self, trainer, pl_module) -> None:
        self._since = time.perf_counter()
        self._fraction = self._schedule_fraction(trainer, trainer.global_step) if self.active else 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.active:
            return
        # Lightning steps the schedule right after the optimizer step, before on_train_batch_end: the
        # fraction it reads is the one reached once this batch is trained.
        # Every process reads a batch of the same shape.
        self.seen_tokens += real_tokens(batch) * trainer.world_size
        self._fraction = self._schedule_fraction(trainer, trainer.global_step + 1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.active or trainer.should_stop:
            return
        if self._shared(trainer, self._budget_fraction() >= 1.0):
            self.stopped_by_budget = True
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self.spent_seconds = self.elapsed()
        self._since = None

    def state_dict(self) -> dict:
        return {"spent_seconds": self.elapsed(), "seen_tokens": self.seen_tokens}

    def load_state_dict(self, state: dict) -> None:
        self.spent_seconds = float(state.get("spent_seconds", 0.0))
        self.seen_tokens = int(state.get("seen_tokens", 0))

    def summary(self, trainer: pl.Trainer) -> dict[str, float]:
        """What the budget bought, for metrics.json."""
        if not self.active:
            return {}
        return {
            "budget/steps": float(trainer.global_step),
            "budget/tokens": float(self.seen_tokens),
            "budget/minutes": self.elapsed() / 60.0,
            "budget/stopped_by_budget": float(self.stopped_by_budget),
        }

    # ------------------------------------------------------------------------------------------ schedule
    def schedule(self, factory: Callable[..., LambdaLR], optimizer: Optimizer) -> LambdaLR:
        """``factory``'s schedule, run on the fraction of the budget spent instead of on the step count."""
        keywords = getattr(factory, "keywords", {})
        if keywords.get("warmup_steps") is not None:
            raise UserError(
                "scheduler.warmup_steps counts steps, which a budget does not fix — under budget.minutes / "
                "budget.tokens set scheduler.warmup_ratio (a fraction of the budget) and warmup_steps=null"
            )
        scheduler = factory(optimizer, total_steps=RESOLUTION)
        shapes = list(scheduler.lr_lambdas)
        scheduler.lr_lambdas = [
            (lambda _step, shape=shape: shape(min(RESOLUTION, int(self._fraction * RESOLUTION))))
            for shape in shapes
        ]
        return scheduler


def budget_of(trainer: pl.Trainer) -> Budget | None:
    """The run's active budget, if it has one."""
    return next((c for c in trainer.callbacks if isinstance(c, Budget) and c.active), None)
