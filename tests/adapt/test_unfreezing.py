"""Gradual unfreezing: the schedule, bitwise-frozen layers, DDP guard, and resume mid-schedule."""

from __future__ import annotations

import json
import logging
import re
from functools import partial
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy
from torch.utils.data import DataLoader

from encoderlab.adapt.freeze import FreezeGradual, freeze, freeze_for_optimizer
from encoderlab.adapt.unfreezing import GradualUnfreezing
from encoderlab.errors import UserError
from encoderlab.models.encoder import build
from encoderlab.models.heads import SequenceClassifier
from encoderlab.tasks.classification import SequenceClassificationTask
from tests.conftest import FAST, cli_env, run_train


def test_schedule_counts_groups_by_steps_or_epochs():
    by_steps = FreezeGradual(every_n_steps=10)
    assert [by_steps.unfrozen_groups(s, 0) for s in (0, 9, 10, 25)] == [0, 0, 1, 2]
    by_epochs = FreezeGradual(every_n_epochs=2)
    assert [by_epochs.unfrozen_groups(100, e) for e in (0, 1, 2, 5)] == [0, 0, 1, 2]
    for bad in ({}, {"every_n_steps": 1, "every_n_epochs": 1}, {"every_n_steps": 0}):
        with pytest.raises(UserError, match="freeze"):
            FreezeGradual(**bad)


class Recorder(pl.Callback):
    """At each step (after the schedule is applied): which groups train, and a snapshot of the weights."""

    def __init__(self) -> None:
        self.trainable: dict[int, set[str]] = {}
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        step = trainer.global_step
        self.trainable[step] = {
            ".".join(n.split(".")[:3])
            if n.startswith("encoder.layers")
            else n.split(".")[0] + "." + n.split(".")[1]
            for n, p in pl_module.named_parameters()
            if p.requires_grad
        }
        self.snapshots[step] = {n: p.detach().clone() for n, p in pl_module.named_parameters()}


def batches(n: int):
    g = torch.Generator().manual_seed(0)
    return [
        {
            "input_ids": torch.randint(5, 40, (4, 6), generator=g),
            "attention_mask": torch.ones(4, 6, dtype=torch.long),
            "labels": torch.randint(0, 2, (4,), generator=g),
        }
        for _ in range(n)
    ]


def toy_task() -> SequenceClassificationTask:
    torch.manual_seed(0)
    encoder = build(vocab_size=40, layers=2, hidden=16, heads=2)
    return SequenceClassificationTask(
        encoder,
        SequenceClassifier(encoder, num_labels=2),
        optimizer=partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.1),
    )


def fit(task, callbacks: list[pl.Callback], max_steps: int) -> pl.Trainer:
    trainer = pl.Trainer(
        max_steps=max_steps,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(task, DataLoader(batches(max_steps + 1), batch_size=None))
    return trainer


def test_top_down_every_n_steps_and_frozen_weights_unchanged():
    task, policy = toy_task(), FreezeGradual(every_n_steps=2)
    freeze_for_optimizer(task, policy)
    recorder = Recorder()
    trainer = fit(task, [*policy.callbacks(), recorder], max_steps=7)
    head = {"head.out"}
    assert recorder.trainable[0] == recorder.trainable[1] == head
    assert recorder.trainable[2] == recorder.trainable[3] == head | {"encoder.layers.1"}
    assert recorder.trainable[4] == head | {"encoder.layers.1", "encoder.layers.0"}
    assert recorder.trainable[6] == head | {"encoder.layers.1", "encoder.layers.0", "encoder.embeddings"}
    first, snaps = recorder.snapshots[0], recorder.snapshots
    for name, value in first.items():
        if name.startswith("encoder.layers.0"):  # frozen for steps 0-3: bitwise unchanged, decay included
            assert torch.equal(snaps[4][name], value), name
        if name.startswith("encoder.embeddings"):
            assert torch.equal(snaps[6][name], value), name
    assert not torch.equal(
        snaps[4]["encoder.layers.1.intermediate.weight"], first["encoder.layers.1.intermediate.weight"]
    )
    # Every parameter the schedule will train was in the optimizer from the start.
    in_optimizer = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in task.parameters()}


def test_requires_grad_changes_once_per_stage_and_stops_at_the_last(caplog):
    task, policy = toy_task(), FreezeGradual(every_n_steps=2)
    freeze_for_optimizer(task, policy)
    with caplog.at_level(logging.INFO, logger="encoderlab"):
        fit(task, policy.callbacks(), max_steps=11)
    changes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("gradual unfreezing")]
    # Steps 0, 2, 4, 6: the head alone, then three groups; at steps 8 and 10 nothing is left to unfreeze.
    assert [re.search(r"at step (\d+)", m).group(1) for m in changes] == ["0", "2", "4", "6"]


def test_an_optimizer_without_the_later_stages_is_refused():
    task, policy = toy_task(), FreezeGradual(every_n_steps=2)
    freeze(task, policy)  # the head alone: the encoder would never reach the optimizer
    with pytest.raises(RuntimeError, match="freeze_for_optimizer"):
        fit(task, policy.callbacks(), max_steps=2)


def test_ddp_without_unused_parameter_detection_is_refused():
    callback = GradualUnfreezing(FreezeGradual(every_n_steps=1))
    trainer = SimpleNamespace(strategy=DDPStrategy())
    with pytest.raises(UserError, match="trainer.strategy.find_unused_parameters=true"):
        callback.setup(trainer, None, "fit")


def trainable(run_dir) -> int:
    return json.loads((run_dir / "metrics.json").read_text())["params/trainable"]


def size(run_dir, *prefixes: str) -> int:
    """Elements of the run's checkpointed tensors under ``prefixes``."""
    state = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    return sum(v.numel() for k, v in state.items() if k.startswith(prefixes))


@pytest.mark.slow
def test_resume_mid_schedule_reapplies_the_stage(data_dir, cache_dir, tmp_path):
    env = cli_env(data_dir, cache_dir, OMP_NUM_THREADS="1")
    run_dir = tmp_path / "run"
    first = [o for o in FAST if not o.startswith("trainer.max_steps")]
    args = [
        "experiment=finetune_sst2",
        *first,
        "trainer.max_epochs=5",
        "freeze=gradual",
        "freeze.every_n_steps=2",
    ]
    result = run_train([*args, "trainer.max_steps=3", f"hydra.run.dir={run_dir}"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"gradual unfreezing at step 2 .*: 1 encoder layer group", result.stdout + result.stderr)
    # params/trainable: what trained by the last step (steps 0-2: the head, then the top layer at step 2).
    assert trainable(run_dir) == size(run_dir, "head.", "encoder.layers.1.")
    resumed = run_train([f"resume={run_dir}", "trainer.max_steps=6"], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The resumed run starts at step 3 with the stage of step 3 (1 group), then moves on at step 4.
    assert re.search(
        r"gradual unfreezing at step 3 .*: 1 encoder layer group", resumed.stdout + resumed.stderr
    )
    assert re.search(
        r"gradual unfreezing at step 4 .*: 2 encoder layer group", resumed.stdout + resumed.stderr
    )
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 6
    # Steps 0-5 of the whole run: layer 0 joined at step 4; the embeddings (step 6) never trained.
    assert trainable(run_dir) == size(run_dir, "head.", "encoder.layers.1.", "encoder.layers.0.")
