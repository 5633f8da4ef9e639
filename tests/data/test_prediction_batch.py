"""``prediction_batch``: raw inputs encoded for prediction exactly as training encodes them."""

from __future__ import annotations

import pytest
import torch

from encoderlab.data import TextClassificationDataModule
from encoderlab.data.collators import pad_sequences
from encoderlab.data.multilabel import MultiLabelClassificationDataModule
from encoderlab.data.tagging import TokenClassificationDataModule, align_labels
from encoderlab.data.tokenizer import special_token_ids
from tests.conftest import conll_sentences, write_conll

INPUT_KEYS = {"input_ids", "attention_mask", "token_type_ids"}


def assert_same_inputs(predicted: dict, trained: dict, keys: set[str]) -> None:
    assert set(predicted) == keys
    for key in keys:
        assert predicted[key].dtype == trained[key].dtype, key
        assert torch.equal(predicted[key], trained[key]), key


def unchanged(tokenizer) -> tuple:
    return tokenizer.to_str(), tokenizer.truncation, tokenizer.padding


@pytest.mark.parametrize("pairs", [False, True], ids=["single", "pairs"])
def test_classification_batch_matches_the_training_collator(tmp_path, make_sentences, write_tsv, pairs):
    # Up to 20 words into max_seq_len=16: most rows are truncated (longest-first for pairs).
    firsts, seconds = make_sentences(40, seed=3), make_sentences(40, seed=4)
    header = ("text", "text_b", "label") if pairs else ("text", "label")
    rows = [
        (a, b, i % 2) if pairs else (a, i % 2) for i, (a, b) in enumerate(zip(firsts, seconds, strict=True))
    ]
    dm = TextClassificationDataModule(
        train_file=str(write_tsv(tmp_path / "train.tsv", rows[:30], header=header)),
        val_file=str(write_tsv(tmp_path / "dev.tsv", rows[30:], header=header)),
        text_pair_column="text_b" if pairs else None,
        vocab_size=150,
        max_seq_len=16,
        cache_dir=str(tmp_path / "cache"),
    )
    dm.prepare()
    trained = dm.collator([dm.val_dataset[i] for i in range(len(dm.val_dataset))])
    items = [(a, b) for a, b in zip(firsts[30:], seconds[30:], strict=True)] if pairs else firsts[30:]
    before = unchanged(dm.tokenizer)

    predicted = TextClassificationDataModule.prediction_batch(dm.tokenizer, dm.max_seq_len, items)

    assert_same_inputs(predicted, trained, INPUT_KEYS)
    assert predicted["input_ids"].shape[1] == 16 and (predicted["token_type_ids"] == 1).any() == pairs
    assert unchanged(dm.tokenizer) == before  # the caller's tokenizer keeps its settings
    multi = MultiLabelClassificationDataModule.prediction_batch(dm.tokenizer, dm.max_seq_len, items)
    assert_same_inputs(multi, trained, INPUT_KEYS)


def tagged_datamodule(tmp_path, max_seq_len: int) -> TokenClassificationDataModule:
    dm = TokenClassificationDataModule(
        train_file=str(write_conll(tmp_path / "train.txt", conll_sentences(60, 1))),
        val_file=str(write_conll(tmp_path / "dev.txt", conll_sentences(20, 2))),
        vocab_size=120,  # small: names split into several word pieces
        max_seq_len=max_seq_len,
        cache_dir=str(tmp_path / "cache"),
    )
    dm.prepare()
    return dm


def reference_tagger_inputs(tokenizer, max_seq_len: int, sentences: list[list[str]]) -> dict:
    """How ``encoderlab-predict`` encoded sentences for a tagger before ``prediction_batch`` existed."""
    copy = type(tokenizer).from_str(tokenizer.to_str())
    copy.no_padding()
    copy.enable_truncation(max_seq_len)
    encodings = copy.encode_batch(sentences, is_pretokenized=True)
    ids = pad_sequences([torch.tensor(e.ids) for e in encodings], special_token_ids(copy)["pad"])
    starts = [align_labels(e.word_ids, [0] * len(w))[1] for e, w in zip(encodings, sentences, strict=True)]
    lengths = torch.tensor([len(e.ids) for e in encodings])
    mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(mask),
        "word_index": pad_sequences([torch.tensor(s) for s in starts], -1),
    }


@pytest.mark.parametrize("max_seq_len", [32, 8], ids=["whole", "truncated"])
def test_tagging_batch_matches_training_and_the_tagger(tmp_path, max_seq_len):
    dm = tagged_datamodule(tmp_path, max_seq_len)
    sentences = [[w for w, _ in s] for s in conll_sentences(20, 2)]
    trained = dm.collator([dm.val_dataset[i] for i in range(len(dm.val_dataset))])
    before = unchanged(dm.tokenizer)

    predicted = TokenClassificationDataModule.prediction_batch(dm.tokenizer, dm.max_seq_len, sentences)

    keys = INPUT_KEYS | {"word_index"}
    assert_same_inputs(predicted, trained, keys)
    assert_same_inputs(predicted, reference_tagger_inputs(dm.tokenizer, max_seq_len, sentences), keys)
    pieces = int(predicted["attention_mask"].sum()) - 2 * len(sentences)
    assert pieces > int((predicted["word_index"] >= 0).sum())  # some words are several pieces
    assert unchanged(dm.tokenizer) == before


def test_prediction_input_says_what_one_item_is():
    assert TextClassificationDataModule.prediction_input == "text"
    assert MultiLabelClassificationDataModule.prediction_input == "text"
    assert TokenClassificationDataModule.prediction_input == "words"
