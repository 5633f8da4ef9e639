"""Documents longer than the window: a label that only the end of each document gives away is learnt when
the documents are read in windows and pooled per document, and not when they are truncated."""

from __future__ import annotations

import json
import random
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from encoderlab.cli.predict import predict
from encoderlab.data import TextClassificationDataModule
from encoderlab.errors import UserError
from encoderlab.models.encoder import build
from encoderlab.models.heads import SequenceClassifier, TokenClassifier
from encoderlab.run.layout import RunDir
from encoderlab.run.task_record import TaskRecord
from encoderlab.tasks.classification import SequenceClassificationTask
from encoderlab.tasks.pairing import check_data_fits

FILLER = [
    "the",
    "court",
    "held",
    "that",
    "parties",
    "shall",
    "agree",
    "any",
    "term",
    "of",
    "this",
    "contract",
    "remains",
    "in",
    "force",
]
VERDICT = {"granted": "yes", "denied": "no"}  # the last word decides the label
MAX_SEQ_LEN = 16  # 14 text tokens a window: the verdict lies far beyond the first


def document(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(sorted(VERDICT))
    filler = " ".join(rng.choice(FILLER) for _ in range(rng.randint(30, 45)))
    return f"{filler} motion {word}", VERDICT[word]


def write(path: Path, rows) -> Path:
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("long_documents")
    rng = random.Random(0)
    return {
        split: write(root / f"{split}.tsv", [document(rng) for _ in range(n)])
        for split, n in (("train", 192), ("val", 32), ("test", 96))
    }


def datamodule(corpus, cache: Path, **settings) -> TextClassificationDataModule:
    dm = TextClassificationDataModule(
        train_file=str(corpus["train"]),
        val_file=str(corpus["val"]),
        test_file=str(corpus["test"]),
        vocab_size=120,
        max_seq_len=MAX_SEQ_LEN,
        batch_size=16,
        cache_dir=str(cache),
        **settings,
    )
    dm.prepare()
    return dm


def fit(dm: TextClassificationDataModule, window_pooling: str = "mean", steps: int = 64):
    pl.seed_everything(0, verbose=False)
    encoder = build(
        vocab_size=dm.vocab_size, layers=1, hidden=32, heads=2, max_positions=MAX_SEQ_LEN, dropout=0.0
    )
    # Each window's tokens max-pooled: the verdict word stands out of the window that holds it.
    head = SequenceClassifier(
        encoder, num_labels=2, pooling="max", dropout=0.0, window_pooling=window_pooling
    )
    optimizer = partial(torch.optim.AdamW, lr=3e-3)
    task = SequenceClassificationTask(encoder, head, optimizer, **dm.task_kwargs)
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(task, datamodule=dm)
    return task.eval()


@torch.inference_mode()
def test_accuracy(task, dm) -> float:
    right = total = 0
    for batch in dm.test_dataloader():
        predicted = task(batch).argmax(-1)
        assert predicted.shape == batch["labels"].shape  # one prediction per document
        right += int((predicted == batch["labels"]).sum())
        total += len(batch["labels"])
    return right / total


test_accuracy.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def windowed(corpus, cache):
    dm = datamodule(corpus, cache, long_documents="window")
    return dm, fit(dm)


def test_windows_learn_what_truncation_cannot_see(corpus, cache, windowed):
    dm, task = windowed
    report = dm.describe()["documents"]["train"]
    assert report["longer_than_window"] == report["documents"] and report["cut"] == 0
    assert report["mean_windows"] > 3
    truncated = datamodule(corpus, cache)
    assert truncated.describe()["documents"]["train"]["cut_share"] == 1.0  # every verdict cut off
    assert test_accuracy(task, dm) >= 0.9
    assert test_accuracy(fit(truncated), truncated) <= 0.7  # chance: the first window never says


def test_attention_pooling_over_windows_trains(windowed):
    dm, _ = windowed
    task = fit(dm, window_pooling="attention")
    assert task.head.window_scorer.weight.abs().sum() > 0
    assert test_accuracy(task, dm) >= 0.9


def test_predict_writes_one_row_per_document_with_the_runs_windows(tmp_path, windowed, corpus):
    dm, task = windowed
    run = RunDir(tmp_path / "run")
    run.last_checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": task.state_dict()}, run.last_checkpoint)
    dm.save_artifacts(run)
    TaskRecord.write(run, task, dm)
    recorded = json.loads(run.task.read_text())["data"]
    assert recorded["long_documents"] == "window" and recorded["window_stride"] == (MAX_SEQ_LEN - 2) // 2
    rows = [line.split("\t") for line in corpus["test"].read_text().splitlines()[1:]]
    given = tmp_path / "documents.jsonl"
    given.write_text("".join(json.dumps({"text": text}) + "\n" for text, _ in rows))
    out = tmp_path / "predictions.jsonl"
    assert predict(run.path, str(given), str(out), device="cpu", batch_size=7) == len(rows)
    predictions = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["text"] for p in predictions] == [text for text, _ in rows]
    right = sum(p["label"] == label for p, (_, label) in zip(predictions, rows, strict=True))
    assert right / len(rows) == pytest.approx(test_accuracy(task, dm))  # the windows training read


def test_windowed_data_goes_only_to_a_head_that_pools_windows(windowed):
    dm, _ = windowed

    class PerTokenTask(SequenceClassificationTask):
        head_kind = TokenClassifier

    with pytest.raises(UserError, match="data.long_documents=window .* set data.long_documents=truncate"):
        check_data_fits(PerTokenTask, dm)
    check_data_fits(SequenceClassificationTask, dm)
