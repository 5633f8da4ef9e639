"""``checkpoints/last.ckpt``: written atomically, every N optimizer steps and at the end, with the RNG states.

A run killed at any moment (``kill -9``, a preempted node) leaves the previous ``last.ckpt`` whole, and
``resume=RUN_DIR`` continues from it exactly: Lightning restores weights, optimizer, scheduler and loop
state; the training loader restores its position in the epoch (``encoderlab.data.samplers``); ``RNGState``
restores the Python, NumPy and torch random states that dropout draws from.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torchmetrics import MetricCollection

from encoderlab.errors import UserError
from encoderlab.files import no_space_error, out_of_space
from encoderlab.formats.weights import describe_key_mismatch, few_keys
from encoderlab.run.layout import LAST_CHECKPOINT_FILE
from encoderlab.validate import at_least, check

LAST = LAST_CHECKPOINT_FILE


class LastValidatedStep(pl.Callback):
    """Remembers the global step of the latest validation, so the entry point can tell if it is stale."""

    def __init__(self) -> None:
        self.step: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.step = trainer.global_step


def save_last_checkpoint(trainer: pl.Trainer, checkpoint_dir: str | Path) -> Path:
    """Write ``last.ckpt`` through a temporary file and a rename: a crash never leaves a torn checkpoint."""
    path = Path(checkpoint_dir) / LAST
    tmp = path.with_name(f".{LAST}.tmp")
    existed = path.exists()
    try:
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, path)
    except Exception as err:
        if out_of_space(err):  # the checkpoint directory is the run's: resume continues from the old one
            retry = f"resume: resume={path.parent.parent}" if existed else "run it again"
            raise no_space_error(path, existed, retry) from err
        raise
    finally:
        if trainer.is_global_zero:
            tmp.unlink(missing_ok=True)  # what a failed write left; after the rename there is nothing
    return path


def weights_are_finite(trainer: pl.Trainer, module: pl.LightningModule) -> bool:
    """All parameters finite on every process (a collective, so every process takes the same branch)."""
    finite = all(bool(torch.isfinite(p).all()) for p in module.parameters())
    return bool(trainer.strategy.reduce_boolean_decision(finite, all=True))


class PeriodicLastCheckpoint(pl.Callback):
    """Save ``last.ckpt`` every ``every_n_steps`` optimizer steps (right after the step, never between
    accumulated micro-batches). Weights that are no longer finite are never saved over a good checkpoint.
    """

    def __init__(self, dirpath: str, every_n_steps: int = 500) -> None:
        check("callbacks.last_checkpoint.every_n_steps", every_n_steps, at_least(1))
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self._saved_step = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        step = trainer.global_step
        if trainer.fast_dev_run or trainer.sanity_checking or step == self._saved_step:
            return
        if step == 0 or step % self.every_n_steps:
            return
        self._saved_step = step
        if weights_are_finite(trainer, pl_module):
            save_last_checkpoint(trainer, self.dirpath)


def gather_per_rank(local):
    """``local`` of every process, indexed by global rank (``[local]`` in a single process).

    For what a checkpoint must hold per process (random states, running metric counts): Lightning saves a
    checkpoint from every process at once but writes only rank 0's, so the others' are gathered into it.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [local]
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, local)
    return gathered


def own_rank(per_rank: list | None):
    """This process's entry of a ``gather_per_rank`` list; None when it was saved by another number of
    processes (or not at all)."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world_size = (
        (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
    )
    if not per_rank or len(per_rank) != world_size:
        return None
    return per_rank[rank]


def metric_state(metrics: MetricCollection) -> dict:
    """What ``metrics`` have accumulated since their last reset: per metric, its states and update count."""
    return {
        name: {"states": _on(metric.metric_state, "cpu"), "updates": metric.update_count}
        for name, metric in metrics.items(keep_base=True, copy_state=False)
    }


def load_metric_state(metrics: MetricCollection, saved: dict) -> None:
    """Put back what :func:`metric_state` returned (metrics it does not name keep theirs)."""
    for name, metric in metrics.items(keep_base=True, copy_state=False):
        if name in saved:
            for key, value in _on(saved[name]["states"], metric.device).items():
                setattr(metric, key, value)
            metric._update_count = saved[name]["updates"]  # compute() warns on a metric it thinks is empty
            metric._computed = None


def _on(states: dict, device) -> dict:
    """Metric states (tensors, or lists of tensors for concatenated ones) as detached copies on ``device``."""
    return {
        key: [t.detach().to(device, copy=True) for t in value]
        if isinstance(value, list)
        else value.detach().to(device, copy=True)
        for key, value in states.items()
    }


class RNGState(pl.Callback):
    """Puts the global random states into checkpoints and restores them on resume (dropout draws from them).

    Every process's states (the processes of a distributed run draw different numbers: their batches
    differ); a resume with another number of processes gives each rank 0's. Stored as tensors and plain
    numbers, so checkpoints still load with ``torch.load(weights_only=True)``.
    """

    def state_dict(self) -> dict:
        return {"per_rank": gather_per_rank(self.local_state())}

    def load_state_dict(self, state: dict) -> None:
        per_rank = state.get("per_rank", [state])  # checkpoints before per-process states held one
        self.load_local_state(own_rank(per_rank) or per_rank[0])

    @staticmethod
    def local_state() -> dict:
        version, mt_state, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "python": [version, list(mt_state), gauss],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def load_local_state(state: dict) -> None:
        version, mt_state, gauss = state["python"]
        random.setstate((version, tuple(mt_state), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def read_checkpoint_state(path: str | Path) -> dict:
    """The weights a checkpoint holds; a one-line UserError when it is torn, truncated or no checkpoint."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    except Exception as err:
        raise UserError(
            f"cannot read {path} ({type(err).__name__}: {str(err).splitlines()[0][:200]}) — the checkpoint "
            "is damaged; resume from a copy or start a new run"
        ) from None


def check_resumable(module: torch.nn.Module, path: str | Path) -> None:
    """Fail in one line, before Lightning tries, when ``path`` is damaged or holds another architecture."""
    hint = "resume with the encoder/head values the run was started with, or start a new run"
    state = read_checkpoint_state(path)
    own = module.state_dict()
    mismatch = describe_key_mismatch(set(own) - set(state), set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if mismatch or shapes:
        found = mismatch or f"shapes differ (checkpoint vs config): {few_keys(shapes, 3)}"
        raise UserError(f"{path} holds a different model than the config builds ({found}) — {hint}")
