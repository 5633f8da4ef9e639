"""Gradual unfreezing and LoRA under DDP (two CPU processes, gloo): no unused-parameter errors."""

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


def fit_ddp(task, callbacks, **ddp) -> None:
    trainer = pl.Trainer(
        max_steps=7,
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


@pytest.mark.slow
def test_gradual_unfreezing_under_ddp():
    task, policy = toy_task(), FreezeGradual(every_n_steps=2)
    freeze_for_optimizer(task, policy)
    before = task.encoder.embeddings.word_embeddings.weight.detach().clone()
    fit_ddp(task, [GradualUnfreezing(policy)], find_unused_parameters=True)  # raises if a rank fails
    # Spawned workers train copies; the parent's weights come back from rank 0 — all groups thawed by step 6.
    assert not torch.equal(task.encoder.embeddings.word_embeddings.weight, before)


@pytest.mark.slow
def test_lora_under_plain_ddp():
    task = toy_task()
    LoRA(r=2).apply(task.encoder)
    freeze(task, NoFreeze())
    base = task.encoder.layers[0].attention.query.base_layer.weight.detach().clone()
    fit_ddp(task, [])
    assert torch.equal(task.encoder.layers[0].attention.query.base_layer.weight, base)
