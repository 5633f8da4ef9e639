"""TrainedParameters: what reached an optimizer step, for every freeze policy, across a resume."""

from __future__ import annotations

from functools import partial

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from encoderlab.adapt.freeze import FreezeEncoder, FreezeGradual, NoFreeze, freeze_for_optimizer
from encoderlab.models.encoder import build
from encoderlab.models.heads import MaskedLMHead, SequenceClassifier
from encoderlab.tasks.classification import SequenceClassificationTask
from encoderlab.tasks.masked_lm import MaskedLMTask
from encoderlab.training.trained_parameters import TrainedParameters


def numel(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def classifier_task(layers: int = 2) -> SequenceClassificationTask:
    torch.manual_seed(0)
    encoder = build(vocab_size=40, layers=layers, hidden=16, heads=2)
    head = SequenceClassifier(encoder, num_labels=2)
    return SequenceClassificationTask(encoder, head, optimizer=partial(torch.optim.AdamW, lr=1e-2))


def batches(n: int, mlm: bool = False) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(5, 40, (4, 6), generator=g)
        if mlm:
            labels = torch.full_like(ids, -100)
            labels[:, 1] = ids[:, 1]
        else:
            labels = torch.randint(0, 2, (4,), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return out


def fit(
    task, policy, max_steps: int, ckpt_path=None, mlm: bool = False
) -> tuple[pl.Trainer, TrainedParameters]:
    freeze_for_optimizer(task, policy)
    trained = TrainedParameters()
    trainer = pl.Trainer(
        max_steps=max_steps,
        callbacks=[trained, *policy.callbacks()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    trainer.fit(task, DataLoader(batches(8, mlm), batch_size=None), ckpt_path=ckpt_path)
    return trainer, trained


def test_gradual_counts_the_groups_that_joined_by_the_last_step():
    task = classifier_task(layers=2)  # 3 groups: embeddings, layer 0, layer 1
    # Steps 0..4 with a group joining every 2 steps: layer 1 at step 2, layer 0 at step 4, embeddings never.
    _, trained = fit(task, FreezeGradual(every_n_steps=2), max_steps=5)
    assert trained.count == numel(task.head, task.encoder.layers[1], task.encoder.layers[0])


def test_static_policies_and_runs_without_steps():
    task = classifier_task()
    assert fit(task, FreezeEncoder(), max_steps=3)[1].count == numel(task.head)
    assert fit(classifier_task(), NoFreeze(), max_steps=0)[1].count == 0


def test_tied_tensors_count_once():
    torch.manual_seed(0)
    encoder = build(vocab_size=40, layers=1, hidden=16, heads=2)
    task = MaskedLMTask(encoder, MaskedLMHead(encoder), optimizer=partial(torch.optim.AdamW, lr=1e-2))
    _, trained = fit(task, NoFreeze(), max_steps=2, mlm=True)
    assert trained.count == task.parameter_counts()[1]  # the decoder weight is the token embeddings


def test_resume_keeps_what_trained_before_the_checkpoint(tmp_path):
    task = classifier_task(layers=2)
    trainer, before = fit(task, FreezeGradual(every_n_steps=2), max_steps=3)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    # Resumed at its last step, the run takes no further step: the count comes from the checkpoint alone.
    resumed = classifier_task(layers=2)
    _, after = fit(resumed, FreezeGradual(every_n_steps=2), 3, tmp_path / "last.ckpt")
    assert torch.equal(resumed.head.out.weight, task.head.out.weight)  # restored, not stepped
    assert after.count == before.count == numel(task.head, task.encoder.layers[1])
