"""Learning-rate schedules as ``LambdaLR`` factories: ``factory(optimizer, total_steps=N)``.

Configs make them partials (``_partial_: true``) with their own knobs; the task supplies ``total_steps``.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from encoderlab.validate import at_least, check_all, fraction

# Every schedule's knobs (``scheduler.<name>``), checked when the task is built (before any training) and
# again when a schedule is called. ``warmup_steps`` may be null (then ``warmup_ratio`` decides).
SCHEDULE_RULES = {
    "warmup_ratio": (fraction,),
    "warmup_steps": (at_least(0),),
    "min_ratio": (fraction,),
    "decay_ratio": (fraction,),
}


def _warmup_steps(total_steps: int, warmup_ratio: float, warmup_steps: int | None) -> int:
    check_all("scheduler", locals(), SCHEDULE_RULES, optional=("warmup_steps",))
    return warmup_steps if warmup_steps is not None else int(round(warmup_ratio * total_steps))


def linear_warmup(
    optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.06, warmup_steps: int | None = None
) -> LambdaLR:
    """Linear warm-up to the base rate, then linear decay to zero at ``total_steps``."""
    warmup = _warmup_steps(total_steps, warmup_ratio, warmup_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return LambdaLR(optimizer, factor)


def cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_ratio: float = 0.06,
    warmup_steps: int | None = None,
    min_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up, then cosine decay to ``min_ratio`` × the base rate."""
    check_all("scheduler", {"min_ratio": min_ratio}, SCHEDULE_RULES)
    warmup = _warmup_steps(total_steps, warmup_ratio, warmup_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def warmup_stable_decay(
    optimizer: Optimizer,
    total_steps: int,
    warmup_ratio: float = 0.06,
    warmup_steps: int | None = None,
    decay_ratio: float = 0.2,
    min_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up, the base rate, then a linear decay to ``min_ratio`` over the last ``decay_ratio`` of
    the run (warmup-stable-decay: most steps at the full rate, and a run may be extended before its decay)."""
    check_all("scheduler", {"decay_ratio": decay_ratio, "min_ratio": min_ratio}, SCHEDULE_RULES)
    warmup = _warmup_steps(total_steps, warmup_ratio, warmup_steps)
    decay_start = max(warmup, total_steps - int(round(decay_ratio * total_steps)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, total_steps - decay_start))
        return 1.0 - (1.0 - min_ratio) * progress

    return LambdaLR(optimizer, factor)


def constant(
    optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.0, warmup_steps: int | None = None
):
    """The base rate throughout, after an optional linear warm-up."""
    warmup = _warmup_steps(total_steps, warmup_ratio, warmup_steps)
    return LambdaLR(optimizer, lambda step: (step + 1) / warmup if step < warmup else 1.0)
