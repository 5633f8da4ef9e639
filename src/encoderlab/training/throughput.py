"""Training throughput (tokens/s and examples/s) on the progress bar and in the logs."""

from __future__ import annotations

import time

import pytorch_lightning as pl

from encoderlab.validate import at_least, check


def real_tokens(batch: dict) -> int:
    """The batch's real (non-padding) tokens: what throughput and token budgets count."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else batch["input_ids"].numel()


class Throughput(pl.Callback):
    """Logs ``train/tokens_per_s`` (real, non-padding tokens) and ``train/examples_per_s`` over a sliding window."""

    def __init__(self, window: int = 10) -> None:
        check("callbacks.throughput.window", window, at_least(1))
        self.window = window
        self._reset()

    def _reset(self) -> None:
        self._started = None
        self._tokens = 0
        self._examples = 0
        self._batches = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._started is None:
            self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._tokens += real_tokens(batch)
        self._examples += batch["input_ids"].shape[0]
        self._batches += 1
        if self._batches < self.window:
            return
        seconds = time.perf_counter() - self._started
        pl_module.log(
            "train/tokens_per_s", self._tokens / seconds, prog_bar=True, on_step=True, on_epoch=False
        )
        pl_module.log("train/examples_per_s", self._examples / seconds, on_step=True, on_epoch=False)
        self._reset()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._reset()  # validation time is not training time
