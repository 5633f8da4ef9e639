"""``Embedder("minilm")`` gives the vectors sentence-transformers gives for the same model: its mean pooling,
normalization and 256-token truncation, with encoderlab's own encoder and tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from encoderlab.embedding import Embedder
from encoderlab.embedding.source import MINILM_PACKAGE
from encoderlab.formats.hf import package_model_dir

TEXTS = [
    "A man is playing a guitar.",
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "Ünïcode — and CAPITALS, too!",
    "x",
    " ".join(["a long review that keeps going"] * 60),  # beyond max_seq_length 256: truncated alike
]


def test_minilm_equals_sentence_transformers():
    sentence_transformers = pytest.importorskip(
        "sentence_transformers",
        reason="sentence-transformers is not installed (pip install 'encoderlab[embed]')",
    )
    pytest.importorskip(MINILM_PACKAGE, reason="the offline MiniLM package is not installed")
    embedder = Embedder("minilm")
    assert (embedder.settings().pooling, embedder.settings().normalize, embedder.settings().max_seq_len) == (
        "mean",
        True,
        256,
    )
    model = sentence_transformers.SentenceTransformer(str(package_model_dir(MINILM_PACKAGE)), device="cpu")
    expected = model.encode(TEXTS, batch_size=4)
    got = embedder.encode(TEXTS, batch_size=4)
    assert got.shape == expected.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(got, expected, atol=1e-5)
