"""Small fixtures built in tmp dirs; the real data sets only through ``real_data_dir``."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from encoderlab.data.tokenizer import train_wordpiece

WORDS = [
    "the",
    "a",
    "film",
    "movie",
    "good",
    "bad",
    "great",
    "terrible",
    "plot",
    "actor",
    "story",
    "scene",
    "music",
    "boring",
    "funny",
    "sad",
    "happy",
    "long",
    "short",
    "market",
    "profit",
    "loss",
    "share",
    "company",
    "quarter",
    "sales",
    "rose",
    "fell",
    "growth",
    "bank",
    "card",
    "money",
    "transfer",
    "account",
]


def _make_sentences(n: int, seed: int = 0, min_len: int = 3, max_len: int = 20) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(min_len, max_len))) for _ in range(n)]


@pytest.fixture(scope="session")
def make_sentences():
    """Factory: ``make_sentences(n, seed=0, min_len=3, max_len=20)`` -> random sentences over a small vocabulary."""
    return _make_sentences


@pytest.fixture(scope="session")
def write_tsv():
    """Factory: ``write_tsv(path, rows, header=("text", "label"))`` -> path."""
    return _write_tsv


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    return _make_sentences(400)


@pytest.fixture(scope="session")
def tokenizer(sentences):
    return train_wordpiece(sentences, vocab_size=200)


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    lines = []
    for i, para in enumerate(_make_sentences(300, seed=1, min_len=10, max_len=40)):
        if i % 30 == 0:
            lines += ["", f" = Article {i} = ", ""]
        lines.append(para)
    p = tmp_path / "corpus.txt"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def _write_tsv(path: Path, rows: list[tuple], header: tuple = ("text", "label")) -> Path:
    path.write_text("\n".join("\t".join(map(str, r)) for r in [header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def classification_files(tmp_path: Path) -> dict[str, Path]:
    """String-labelled TSV train/dev/test with labels 'pos'/'neg'/'neutral'."""
    labels = ["pos", "neg", "neutral"]
    rows = [(s, labels[i % 3]) for i, s in enumerate(_make_sentences(120, seed=2))]
    return {
        "train": _write_tsv(tmp_path / "train.tsv", rows[:90]),
        "val": _write_tsv(tmp_path / "dev.tsv", rows[90:105]),
        "test": _write_tsv(tmp_path / "test.tsv", rows[105:]),
    }


@pytest.fixture
def real_data_dir() -> Path:
    d = os.environ.get("ENCODERLAB_DATA_DIR")
    if not d:
        pytest.skip(
            "ENCODERLAB_DATA_DIR is not set (point it at the shared data folder to run real-data tests)"
        )
    if not Path(d).is_dir():
        pytest.skip(f"ENCODERLAB_DATA_DIR={d} does not exist (point it at the shared data folder)")
    return Path(d)
