"""Gradual unfreezing and LoRA under DDP (two CPU processes, gloo): no unused-parameter errors, and what
the policy trains is what changed (the spawned processes train copies; the parent gets rank 0's weights
back)."""

from __future__ import annotations

from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy
from torch.utils.data import DataLoader, Dataset

from encoderlab.adapt.adapters import LoRA
from encoderlab.adapt.freeze import FreezeGradual, NoFreeze, freeze, freeze_for_optimizer
from encoderlab.adapt.unfreezing import GradualUnfreezing
from encoderlab.models.encoder import build
from encoderlab.models.heads import SequenceClassifier
from encoderlab.tasks.classification import SequenceClassificationTask


class Toy(Dataset):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> dict:
        ids = torch.randint(5, 40, (6,), generator=torch.Generator().manual_seed(i))
        return {"input_ids": ids, "attention_mask": torch.ones(6, dtype=torch.long), "labels": i % 2}


def toy_task() -> SequenceClassificationTask:
    torch.manual_seed(0)
    encoder = build(vocab_size=40, layers=2, hidden=16, heads=2)
    head = SequenceClassifier(encoder, num_labels=2)
    return SequenceClassificationTask(encoder, head, optimizer=partial(torch.optim.AdamW, lr=1e-2))


def fit_ddp(task, callbacks, max_steps: int = 7, **ddp) -> None:
    trainer = pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=2,
        strategy=DDPStrategy(start_method="spawn", **ddp),
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, DataLoader(Toy(), batch_size=4))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> dict[str, bool]:
    return {name: not torch.equal(p, before[name]) for name, p in module.named_parameters()}


@pytest.mark.slow
def test_gradual_unfreezing_under_ddp():
    task, policy = toy_task(), FreezeGradual(every_n_steps=2)
    freeze_for_optimizer(task, policy)
    before = {name: snapshot(module) for name, module in [("head", task.head), *stage_modules(task)]}
    # Steps 0 and 1 train the head alone, step 2 adds the top layer; layer 0 and the embeddings stay frozen.
    fit_ddp(
        task, [GradualUnfreezing(policy)], max_steps=3, find_unused_parameters=True
    )  # raises if a rank fails
    after = {
        name: changed(module, before[name]) for name, module in [("head", task.head), *stage_modules(task)]
    }
    assert all(after["head"].values()) and all(after["layer 1"].values()), after
    assert not any(after["layer 0"].values()) and not any(after["embeddings"].values()), after


def stage_modules(task) -> list[tuple[str, torch.nn.Module]]:
    return [
        ("layer 1", task.encoder.layers[1]),
        ("layer 0", task.encoder.layers[0]),
        ("embeddings", task.encoder.embeddings),
    ]


@pytest.mark.slow
def test_lora_under_plain_ddp():
    task = toy_task()
    LoRA(r=2).apply(task.encoder)
    freeze(task, NoFreeze())
    adapters = {n: p for n, p in task.encoder.named_parameters() if "lora_B" in n}
    assert len(adapters) == 4 and all(not p.any() for p in adapters.values())  # query and value, 2 layers
    base = {n: p.detach().clone() for n, p in task.encoder.named_parameters() if "lora_" not in n}
    head = snapshot(task.head)
    fit_ddp(task, [])
    # The B matrices start at zero (the update B A is zero): each moved off it; the encoder's own weights did not.
    trained = dict(task.encoder.named_parameters())
    assert all(trained[n].abs().max() > 1e-4 for n in adapters), {
        n: float(trained[n].abs().max()) for n in adapters
    }
    assert all(torch.equal(trained[n], w) for n, w in base.items())
    assert all(changed(task.head, head).values())
