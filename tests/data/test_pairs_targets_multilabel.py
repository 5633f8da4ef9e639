"""Sentence pairs ([CLS] a [SEP] b [SEP] with token types), regression targets, multi-label targets."""

from __future__ import annotations

import json

import pytest
import torch

from encoderlab.data import TextClassificationDataModule
from encoderlab.data.multilabel import MultiLabelClassificationDataModule
from encoderlab.data.tokenizer import special_token_ids
from encoderlab.errors import UserError


def make_dm(tmp_path, train, cls=TextClassificationDataModule, **kw):
    kw = {"vocab_size": 150, "max_seq_len": 16, "batch_size": 4, "cache_dir": str(tmp_path / "cache"), **kw}
    return cls(train_file=str(train), **kw)


def test_pair_encoding_has_both_segments_and_token_types(tmp_path, make_sentences, write_tsv):
    rows = [
        (a, b, i % 2)
        for i, (a, b) in enumerate(zip(make_sentences(20, 1), make_sentences(20, 2), strict=True))
    ]
    dm = make_dm(
        tmp_path,
        write_tsv(tmp_path / "p.tsv", rows, header=("s1", "s2", "label")),
        text_column="s1",
        text_pair_column="s2",
        pairs=True,
        max_seq_len=64,
    )
    dm.prepare()
    ids = special_token_ids(dm.tokenizer)
    item = dm.train_dataset[0]
    tokens = item["input_ids"].tolist()
    types = item["token_type_ids"].tolist()
    # [CLS] a... [SEP] b... [SEP]: type 0 up to and including the first [SEP], type 1 after it.
    first_sep = tokens.index(ids["sep"])
    assert tokens[0] == ids["cls"] and tokens[-1] == ids["sep"] and tokens.count(ids["sep"]) == 2
    assert types == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)


def test_pair_truncation_keeps_both_texts(tmp_path, write_tsv):
    long_a = " ".join(["film"] * 60)
    rows = [(long_a, "short plot", 1), ("short", " ".join(["movie"] * 60), 0)] * 5
    dm = make_dm(
        tmp_path,
        write_tsv(tmp_path / "long.tsv", rows, header=("a", "b", "label")),
        text_column="a",
        text_pair_column="b",
        max_seq_len=12,
        val_split=0.5,
    )
    dm.prepare()
    sep = special_token_ids(dm.tokenizer)["sep"]
    for dataset in (dm.train_dataset, dm.val_dataset):
        for i in range(len(dataset)):
            item = dataset[i]
            tokens = item["input_ids"].tolist()
            assert len(tokens) == 12 and tokens.count(sep) == 2
            # Both segments keep words: the long side is cut, the short side survives whole.
            first_sep = tokens.index(sep)
            assert first_sep >= 2 and len(tokens) - first_sep - 2 >= 1
            assert int(item["token_type_ids"].sum()) >= 2


def test_pair_task_with_one_text_column_is_an_error(tmp_path, write_tsv):
    path = write_tsv(tmp_path / "one.tsv", [("a text", 1), ("another", 0)])
    with pytest.raises(UserError, match=r"data\.text_pair_column"):
        make_dm(tmp_path, path, pairs=True)


@pytest.mark.parametrize("bad", ["nan", "inf", "NaN"])
def test_regression_target_that_is_not_a_number(tmp_path, write_tsv, bad):
    path = write_tsv(tmp_path / "r.tsv", [("one", "1.5"), ("two", bad), ("three", "2.0"), ("four", "0.5")])
    with pytest.raises(UserError, match=rf"'{bad}' in data row 2 of .*r.tsv is not a finite number"):
        make_dm(tmp_path, path, num_labels=1).prepare()


def test_regression_targets_are_floats(tmp_path, write_tsv):
    rows = [(f"text {i}", f"{i * 0.25:.2f}") for i in range(12)]
    dm = make_dm(tmp_path, write_tsv(tmp_path / "r.tsv", rows), num_labels=1, val_split=0.25)
    dm.prepare()
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].dtype == torch.float32 and dm.num_labels == 1 and dm.label_names == []


def test_multilabel_from_delimited_column(tmp_path, write_tsv):
    rows = [
        ("refund my card", "billing|refund"),
        ("hello", ""),
        ("card lost", "card"),
        ("money back", " refund "),
    ] * 4
    dm = make_dm(
        tmp_path, write_tsv(tmp_path / "m.tsv", rows), MultiLabelClassificationDataModule, val_split=0.25
    )
    dm.prepare()
    assert dm.label_names == ["billing", "card", "refund"] and dm.num_labels == 3
    assert dm.head_kwargs == {"num_labels": 3}
    targets = {tuple(dm.train_dataset[i]["labels"].tolist()) for i in range(len(dm.train_dataset))}
    assert targets <= {(1.0, 0.0, 1.0), (0.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)}
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].shape == (4, 3) and batch["labels"].dtype == torch.float32
    dm.save_label_map(tmp_path / "label_map.json")
    assert json.loads((tmp_path / "label_map.json").read_text())["label_names"] == dm.label_names


def test_multilabel_from_jsonl_lists_and_errors(tmp_path):
    rows = [{"text": "refund", "labels": ["refund"]}, {"text": "both", "labels": ["billing", "refund"]}] * 5
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    dm = make_dm(tmp_path, path, MultiLabelClassificationDataModule, label_column="labels")
    dm.prepare()
    assert dm.label_names == ["billing", "refund"]
    assert sorted(tuple(v) for v in dm.train_dataset.labels.tolist())[-1] == (1.0, 1.0)
    with pytest.raises(UserError, match="num_labels=5"):
        make_dm(
            tmp_path, path, MultiLabelClassificationDataModule, label_column="labels", num_labels=5
        ).prepare()
    dev = tmp_path / "dev.jsonl"
    dev.write_text(json.dumps({"text": "x", "labels": ["fraud"]}) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"'fraud' in row 1 of .*dev.jsonl"):
        make_dm(
            tmp_path, path, MultiLabelClassificationDataModule, label_column="labels", val_file=str(dev)
        ).prepare()
