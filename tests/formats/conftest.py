"""Fixtures for Hugging Face interop: a small WordPiece tokenizer and a random-weight BERT directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest.importorskip("transformers")

import transformers  # noqa: E402

from tests.formats.interop_helpers import TEXTS, perturb, small_bert_config  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    from encoderlab.data import save_tokenizer
    from encoderlab.data.tokenizer import train_wordpiece

    directory = tmp_path_factory.mktemp("tokenizer")
    save_tokenizer(train_wordpiece(TEXTS, vocab_size=120, min_frequency=1), directory)
    return directory


@pytest.fixture(scope="session")
def vocab_size(tokenizer_dir) -> int:
    from encoderlab.data import load_tokenizer

    return load_tokenizer(tokenizer_dir).get_vocab_size(with_added_tokens=True)


@pytest.fixture
def hf_dir(tmp_path, tokenizer_dir, vocab_size) -> Path:
    """A ``BertModel`` with random weights saved by ``save_pretrained`` (+ our tokenizer files)."""
    torch.manual_seed(0)
    model = transformers.BertModel(small_bert_config(vocab_size))
    perturb(model)
    directory = tmp_path / "hf_bert"
    model.save_pretrained(directory)
    for name in ("tokenizer.json", "vocab.txt"):
        (directory / name).write_bytes((tokenizer_dir / name).read_bytes())
    return directory
