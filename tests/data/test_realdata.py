"""End-to-end on the shared real data sets; skipped unless ENCODERLAB_DATA_DIR is set."""

from __future__ import annotations

import pytest
import torch

from encoderlab.data import TextClassificationDataModule, TextCorpusDataModule

pytestmark = pytest.mark.realdata


def test_sst2(real_data_dir, tmp_path):
    d = real_data_dir / "sst2"
    dm = TextClassificationDataModule(
        train_file=str(d / "train.tsv"),
        val_file=str(d / "dev.tsv"),
        test_file=str(d / "test.tsv"),
        train_limit=2000,
        vocab_size=2000,
        num_labels=2,
        cache_dir=str(tmp_path),
    )
    dm.prepare()
    assert dm.label_names == ["0", "1"] and len(dm.train_dataset) == 2000 and len(dm.val_dataset) == 872
    batch = next(iter(dm.val_dataloader()))
    assert batch["input_ids"].shape[0] == 32 and batch["labels"].dtype == torch.long


def test_financial_phrasebank(real_data_dir, tmp_path):
    d = real_data_dir / "financial_phrasebank"
    dm = TextClassificationDataModule(
        train_file=str(d / "train.tsv"), val_file=str(d / "dev.tsv"), vocab_size=2000, cache_dir=str(tmp_path)
    )
    dm.prepare()
    assert dm.label_names == ["negative", "neutral", "positive"] and dm.num_labels == 3
    assert next(iter(dm.train_dataloader()))["labels"].max() <= 2


def test_mrpc_pairs_with_bom(real_data_dir, tmp_path):
    d = real_data_dir / "mrpc"
    dm = TextClassificationDataModule(
        train_file=str(d / "train.tsv"),
        val_file=str(d / "dev.tsv"),
        text_column="#1 String",
        text_pair_column="#2 String",
        label_column="Quality",
        train_limit=500,
        vocab_size=1000,
        cache_dir=str(tmp_path),
    )
    dm.prepare()
    assert dm.num_labels == 2 and len(dm.val_dataset) == 408
    assert (next(iter(dm.val_dataloader()))["token_type_ids"] == 1).any()


def test_wiki_en_packed(real_data_dir, tmp_path):
    d = real_data_dir / "wiki_en"
    dm = TextCorpusDataModule(
        train_file=str(d / "train.txt"),
        val_file=str(d / "valid.txt"),
        train_limit=2000,
        val_limit=200,
        vocab_size=4000,
        max_seq_len=128,
        cache_dir=str(tmp_path),
    )
    dm.prepare()
    assert len(dm.train_dataset) > 100
    block = dm.train_dataset[0]
    assert block.shape == (128,) and block[0] == 2 and block[-1] == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (32, 128)
