"""Killing training runs at a seeded moment, for the crash tests, and comparing the runs they resume to.

``StepMarker`` is a callback added to the run under test
(``+callbacks.step_marker={_target_:tests.promises.kills.StepMarker,path:FILE}``; a run's working directory
is the repository, so ``tests`` is importable): rank 0 writes each optimizer step it finishes to FILE. It
draws no random numbers and touches no weights, so the run trains exactly as one without it. A test then
SIGKILLs the run a seeded number of steps after a checkpoint, plus a seeded delay, so the steps since the
checkpoint are lost and replayed on resume.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch


class StepMarker(pl.Callback):
    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.is_global_zero:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(str(trainer.global_step))
            os.replace(tmp, self.path)  # a reader never sees half a number


def marker_override(path: Path) -> str:
    return f"+callbacks.step_marker={{_target_:tests.promises.kills.StepMarker,path:'{path}'}}"


def marked_step(path: Path) -> int:
    """The last optimizer step the run finished (-1 before the first)."""
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return -1


def checkpoint_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


@dataclass(frozen=True)
class KillPlan:
    """Kill ``lost`` steps after the checkpoint of step ``checkpoint``, ``delay`` seconds into that step."""

    checkpoint: int
    lost: int
    delay: float

    @classmethod
    def draw(cls, seed: int, every: int, last_checkpoint: int) -> KillPlan:
        """A plan from ``seed``: a checkpoint (every ``every`` steps, up to ``last_checkpoint``), then 1 to
        ``every - 2`` lost steps (the next checkpoint stays a step or more away) and up to 20 ms more."""
        rng = random.Random(seed)
        return cls(
            checkpoint=every * rng.randint(1, last_checkpoint // every),
            lost=rng.randint(1, every - 2),
            delay=rng.uniform(0.0, 0.02),
        )

    @property
    def step(self) -> int:
        return self.checkpoint + self.lost


def kill_at(
    proc: subprocess.Popen,
    marker: Path,
    plan: KillPlan,
    local_rank: int = 0,
    signum: int = signal.SIGKILL,
    timeout: float = 240,
) -> int:
    """SIGKILL (or ``signum``) ``proc``'s process of ``local_rank`` once its run has marked ``plan.step``,
    ``plan.delay`` later; the process id."""
    deadline = time.monotonic() + timeout
    while marked_step(marker) < plan.step:
        assert proc.poll() is None, f"the run ended before step {plan.step}: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"step {plan.step} not reached in {timeout} s"
        time.sleep(0.002)
    time.sleep(plan.delay)
    pid = child_process(proc.pid, local_rank) if local_rank else proc.pid
    os.kill(pid, signum)
    return pid


def child_process(pid: int, local_rank: int) -> int:
    """The process that ``pid`` started as local rank ``local_rank`` (Lightning's DDP re-runs the command)."""
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"LOCAL_RANK={local_rank}".encode() in environ:
            return int(child)
    raise AssertionError(f"process {pid} has no child with LOCAL_RANK={local_rank}")


def assert_lost_steps(run_dir: Path, marker: Path, plan: KillPlan) -> int:
    """The killed run's checkpoint is the planned one and it had trained past it; the steps lost."""
    saved, reached = checkpoint_step(run_dir / "checkpoints/last.ckpt"), marked_step(marker)
    assert saved == plan.checkpoint and reached > saved, (plan, saved, reached)
    return reached - saved


def compared_metrics(run_dir: Path) -> dict:
    """metrics.json without what measures time (time/*, throughput per second)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if not k.startswith("time/") and not k.endswith("_per_s")}


def different_weights(expected_run: Path, got_run: Path) -> list[str]:
    """Names of the checkpoint tensors (encoder, head, adapters) that are not bitwise equal."""
    expected, got = (
        torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        for run in (expected_run, got_run)
    )
    assert expected.keys() == got.keys()
    return [k for k in expected if not torch.equal(expected[k], got[k])]
