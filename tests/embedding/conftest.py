"""Tiny encoder exports built in-process (a trained tokenizer, a 2-layer encoder), for the embedding tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from encoderlab.data import load_tokenizer, save_tokenizer
from encoderlab.data.tokenizer import train_wordpiece
from encoderlab.formats.export import export_encoder
from encoderlab.models.encoder import Encoder, build
from tests.conftest import labelled_rows

MAX_POSITIONS = 64


@pytest.fixture(scope="session")
def embed_tokenizer_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("embed_tokenizer")
    texts = [t for t, _ in labelled_rows(300, 3)]
    save_tokenizer(train_wordpiece(texts, vocab_size=300, min_frequency=1), directory)
    return directory


def tiny_encoder(tokenizer_dir: Path, seed: int = 0, **settings) -> Encoder:
    torch.manual_seed(seed)
    vocab = load_tokenizer(tokenizer_dir).get_vocab_size(with_added_tokens=True)
    return build(vocab, layers=2, hidden=32, heads=2, max_positions=MAX_POSITIONS, **settings).eval()


@pytest.fixture(scope="session")
def tiny_export(embed_tokenizer_dir, tmp_path_factory) -> Path:
    """A bidirectional encoder export (random weights: what matters here is that every path computes the same)."""
    out = tmp_path_factory.mktemp("embed_export") / "encoder"
    return export_encoder(tiny_encoder(embed_tokenizer_dir), embed_tokenizer_dir, out)
