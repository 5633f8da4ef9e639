"""The training budget: it stops the run, paces the schedule by the fraction spent, survives a resume, and
refuses step-counted warm-up; the plain progress line that runs without a terminal."""

from __future__ import annotations

import logging
from functools import partial
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from encoderlab.errors import UserError
from encoderlab.models.encoder import build
from encoderlab.models.heads import SequenceClassifier
from encoderlab.tasks.classification import SequenceClassificationTask
from encoderlab.training.budget import Budget
from encoderlab.training.progress import PlainProgress, clock
from encoderlab.training.schedules import linear_warmup
from encoderlab.training.summaries import callback_summaries

TOKENS_PER_BATCH = 4 * 6


class LearningRates(pl.Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


QUARTER_WARMUP = partial(linear_warmup, warmup_ratio=0.25)


def task(scheduler=QUARTER_WARMUP) -> SequenceClassificationTask:
    torch.manual_seed(0)
    encoder = build(vocab_size=40, layers=1, hidden=16, heads=2)
    head = SequenceClassifier(encoder, num_labels=2)
    return SequenceClassificationTask(
        encoder, head, optimizer=partial(torch.optim.AdamW, lr=1e-2), scheduler=scheduler
    )


def loader(n: int = 64) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(n):
        ids = torch.randint(5, 40, (4, 6), generator=g)
        rows.append(
            {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 2, (4,))}
        )
    return DataLoader(rows, batch_size=None)


def fit(budget: Budget, max_steps: int = -1, ckpt_path=None, module=None, extra=()):
    rates = LearningRates()
    trainer = pl.Trainer(
        max_steps=max_steps,
        max_epochs=-1,
        callbacks=[budget, rates, *extra],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    trainer.fit(module or task(), loader(), ckpt_path=ckpt_path)
    return trainer, rates.rates


def test_a_token_budget_stops_the_run_and_its_schedule_has_decayed():
    budget = Budget(tokens=20 * TOKENS_PER_BATCH)
    trainer, rates = fit(budget)
    assert trainer.global_step == 20  # with no step limit at all, the budget ended the run
    assert budget.stopped_by_budget
    peak = max(rates)
    assert rates.index(peak) == 5  # warm-up = a quarter of the budget
    assert rates[-1] < 0.1 * peak  # the decay finished with the budget (the last step ran at 1/16 of it)
    assert rates == sorted(rates[:6]) + sorted(rates[6:], reverse=True)
    summary = callback_summaries(trainer)
    assert summary["budget/steps"] == 20 and summary["budget/tokens"] == 20 * TOKENS_PER_BATCH


def test_max_steps_still_caps_a_budgeted_run_and_the_schedule_follows_it():
    budget = Budget(tokens=10_000 * TOKENS_PER_BATCH)
    trainer, rates = fit(budget, max_steps=8)
    assert trainer.global_step == 8 and not budget.stopped_by_budget
    assert rates.index(max(rates)) == 2  # the schedule ran on the steps, the further along of the two


def test_a_time_budget_stops_the_run(monkeypatch):
    now = [1000.0]

    def fake_clock() -> float:
        now[0] += 1.0  # one second per reading
        return now[0]

    monkeypatch.setattr("encoderlab.training.budget.time.perf_counter", fake_clock)
    budget = Budget(minutes=0.5)
    trainer, _ = fit(budget)
    assert budget.stopped_by_budget and 5 < trainer.global_step < 30
    assert budget.elapsed() >= 30


class SaveAt(pl.Callback):
    def __init__(self, step: int, path) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)


def test_the_spent_budget_is_in_the_checkpoint_and_a_resume_continues_it(tmp_path):
    ckpt = tmp_path / "mid.ckpt"
    _, straight = fit(Budget(tokens=20 * TOKENS_PER_BATCH), extra=[SaveAt(12, ckpt)])
    resumed_budget = Budget(tokens=20 * TOKENS_PER_BATCH)
    resumed, rates = fit(resumed_budget, ckpt_path=str(ckpt))
    assert resumed.global_step == 20  # 8 more steps: the first 12 were already spent
    assert resumed_budget.seen_tokens == 20 * TOKENS_PER_BATCH
    assert rates == pytest.approx(straight[12:])  # the same learning rates as the uninterrupted run


def test_step_counted_warmup_is_refused_under_a_budget():
    scheduler = partial(linear_warmup, warmup_steps=10)
    with pytest.raises(UserError, match="scheduler.warmup_ratio"):
        fit(Budget(minutes=1), module=task(scheduler))


@pytest.mark.parametrize(
    ("kwargs", "key"), [({"minutes": 0}, "budget.minutes"), ({"tokens": -5}, "budget.tokens")]
)
def test_bad_budgets_are_refused_naming_the_key(kwargs, key):
    with pytest.raises(UserError, match=key):
        Budget(**kwargs)


def test_no_budget_changes_nothing():
    budget = Budget()
    trainer, _ = fit(budget, max_steps=3)
    assert trainer.global_step == 3 and callback_summaries(trainer) == {}


def test_plain_progress_line_names_step_loss_speed_and_eta():
    progress = PlainProgress(every_seconds=1, always=True)
    progress._first_step = 0
    trainer = SimpleNamespace(
        global_step=250,
        max_steps=1000,
        callback_metrics={"train/loss": torch.tensor(2.5), "train/tokens_per_s": torch.tensor(12345.0)},
        callbacks=[],
    )
    line = progress.line(trainer, seconds=50.0)
    assert line == "step 250/1,000 | loss 2.5000 | 12,345 tokens/s | elapsed 50s | ETA 2m30s"
    assert clock(3725) == "1h02m"


def test_plain_progress_eta_against_the_budget():
    progress = PlainProgress(every_seconds=1, always=True)
    budget = Budget(minutes=10)
    budget._fraction, budget.spent_seconds = 0.25, 150.0
    trainer = SimpleNamespace(global_step=10, max_steps=-1, callback_metrics={}, callbacks=[budget])
    assert progress.line(trainer, seconds=150.0).endswith("ETA 7m30s (budget)")


def test_plain_progress_logs_during_training_without_a_terminal(caplog):
    progress = PlainProgress(every_seconds=1e-9)
    assert progress.enabled  # pytest captures stderr: not a terminal
    rates = LearningRates()
    trainer = pl.Trainer(
        max_steps=3,
        callbacks=[progress, rates],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
    )
    with caplog.at_level(logging.INFO, logger="encoderlab"):
        trainer.fit(task(), loader(4))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert lines and lines[-1].startswith("step 3/3")
