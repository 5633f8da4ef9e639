"""Callbacks that report what the run reached (a budget's steps and tokens, ...) into metrics.json.

A callback with a ``summary(trainer) -> dict[str, float]`` method takes part; the entry point does not know
which callbacks do.
"""

from __future__ import annotations

import pytorch_lightning as pl


def callback_summaries(trainer: pl.Trainer) -> dict[str, float]:
    merged: dict[str, float] = {}
    for callback in trainer.callbacks:
        summary = getattr(callback, "summary", None)
        if callable(summary):
            merged.update(summary(trainer))
    return merged
