"""Shared fixtures: a small data directory laid out like the real one, and helpers to run the CLI."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"

POSITIVE = ["good", "great", "charming", "wonderful", "moving", "brilliant", "funny", "smart"]
NEGATIVE = ["bad", "dull", "boring", "awful", "tedious", "bleak", "weak", "messy"]
FILLER = [
    "the",
    "film",
    "story",
    "movie",
    "plot",
    "actors",
    "director",
    "scene",
    "cast",
    "music",
    "script",
    "it",
    "is",
    "was",
    "a",
    "an",
    "and",
    "of",
    "to",
    "in",
    "with",
    "this",
    "that",
    "for",
    "on",
    "as",
    "its",
    "by",
    "from",
    "at",
    "but",
    "very",
    "quite",
    "rather",
    "often",
    "never",
    "always",
]


def _sentence(rng: random.Random, words: list[str], n: int) -> str:
    return " ".join(rng.choice(words) for _ in range(n))


def labelled_rows(n: int, seed: int, names=("0", "1")) -> list[tuple[str, str]]:
    """Sentences whose label is given away by one sentiment word, so a tiny model can learn it."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randrange(2)
        cue = rng.choice(POSITIVE if label else NEGATIVE)
        words = _sentence(rng, FILLER, rng.randint(3, 12)).split()
        words.insert(rng.randrange(len(words) + 1), cue)
        rows.append((" ".join(words), names[label]))
    return rows


def write_tsv(path: Path, rows, header=("text", "label")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\t".join(header) + "\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    return path


def write_corpus(path: Path, paragraphs: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = []
    for i in range(paragraphs):
        if i % 10 == 0:
            lines += ["", f" = Article {i} = ", ""]
        lines.append(_sentence(rng, FILLER + POSITIVE + NEGATIVE, rng.randint(20, 60)) + " .")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data directory with the real data sets' layout and formats, in miniature."""
    root = tmp_path_factory.mktemp("data")
    write_corpus(root / "wiki_en/train.txt", 400, seed=1)
    write_corpus(root / "wiki_en/valid.txt", 40, seed=2)
    write_tsv(root / "sst2/train.tsv", labelled_rows(300, 3))
    write_tsv(root / "sst2/dev.tsv", labelled_rows(60, 4))
    write_tsv(root / "sst2/test.tsv", labelled_rows(60, 5))
    names = ("negative", "positive")
    write_tsv(
        root / "financial_phrasebank/train.tsv", labelled_rows(120, 6, names) + [("flat year", "neutral")]
    )
    write_tsv(root / "financial_phrasebank/dev.tsv", labelled_rows(30, 7, names) + [("flat", "neutral")])
    write_tsv(root / "financial_phrasebank/test.tsv", labelled_rows(30, 8, names) + [("level", "neutral")])
    write_tsv(
        root / "banking77/train.tsv",
        [(t, f"intent_{i % 77}") for i, (t, _) in enumerate(labelled_rows(400, 9))],
    )
    write_tsv(
        root / "banking77/test.tsv",
        [(t, f"intent_{i % 77}") for i, (t, _) in enumerate(labelled_rows(154, 10))],
    )
    write_pair_data(root)
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """Shared between tests so tokenizers and token caches are built once per session."""
    return tmp_path_factory.mktemp("cache")


def cli_env(data_dir: Path, cache_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ENCODERLAB_DATA_DIR=str(data_dir),
        ENCODERLAB_CACHE_DIR=str(cache_dir),
        WANDB_MODE="offline",
        PYTHONWARNINGS="ignore",
        HYDRA_FULL_ERROR="0",
    )
    # One math thread per CLI process: tiny models gain nothing from more, and on a shared machine idle
    # OpenMP threads spinning for cores make runs an order of magnitude slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


# Small and fast for every CLI test: the tiny encoder, short sequences, a few steps.
FAST = [
    "encoder=tiny",
    "data.vocab_size=400",
    "data.max_seq_len=32",
    "data.batch_size=8",
    "trainer.limit_train_batches=4",
    "trainer.max_steps=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
    "~callbacks.progress_bar",
]


def start_train(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    """``encoderlab-train`` in the background (stderr kept for the failure message)."""
    return subprocess.Popen(
        [sys.executable, "-m", "encoderlab.train", *args],
        env=env,
        cwd=cwd or REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_train(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "encoderlab.train", *args],
        env=env,
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def pretrained_run(data_dir, cache_dir, tmp_path_factory) -> Path:
    """One tiny pre-training run through the real entry point, shared read-only by the tests that need one."""
    run_dir = tmp_path_factory.mktemp("runs") / "pretrain"
    result = run_train(
        ["experiment=pretrain_mlm", *FAST, f"hydra.run.dir={run_dir}"], cli_env(data_dir, cache_dir)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


NAMES = {"PER": ["Ada Lovelace", "Alan Turing", "Grace"], "LOC": ["Paris", "New York"], "ORG": ["Acme Corp"]}


def conll_sentences(n: int, seed: int) -> list[list[tuple[str, str]]]:
    """(word, IOB2 tag) sentences: filler words around one or two names of a known type."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        words = [(w, "O") for w in _sentence(rng, FILLER, rng.randint(3, 8)).split()]
        for _ in range(rng.randint(1, 2)):
            kind = rng.choice(sorted(NAMES))
            parts = rng.choice(NAMES[kind]).split()
            entity = [(p, ("B-" if i == 0 else "I-") + kind) for i, p in enumerate(parts)]
            at = rng.randrange(len(words) + 1)
            words[at:at] = entity
        sentences.append(words)
    return sentences


def write_conll(path: Path, sentences, docstart: bool = True) -> Path:
    """CoNLL-2003 layout: ``word POS chunk NER`` per line, blank line between sentences."""
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for sentence in sentences:
        lines += [f"{w} NN I-NP {t}" for w, t in sentence] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_columns(path: Path, header, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(map(str, row)) + "\n" for row in [header, *rows]]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def pair_rows(n: int, seed: int, score: bool = False) -> list[tuple[str, str, str]]:
    """(sentence 1, sentence 2, label): label 1 (or a high score) when both share their sentiment cue."""
    rng = random.Random(seed)
    rows = []
    for (a, _), (b, _) in zip(labelled_rows(n, seed), labelled_rows(n, seed + 1000), strict=True):
        same = rng.random() < 0.5
        b = b if not same else a.split()[0] + " " + b
        label = f"{rng.uniform(3, 5) if same else rng.uniform(0, 2):.3f}" if score else str(int(same))
        rows.append((a, b, label))
    return rows


def write_pair_data(root: Path) -> None:
    """mrpc / rte / stsb in their GLUE layouts (MRPC with its UTF-8 byte-order mark and column names)."""
    for split, n, seed in (("train", 120, 21), ("dev", 40, 22)):
        mrpc = pair_rows(n, seed)
        header = ("\ufeffQuality", "#1 ID", "#2 ID", "#1 String", "#2 String")
        write_columns(
            root / "mrpc" / f"{split}.tsv", header, [(y, i, i + 1, a, b) for i, (a, b, y) in enumerate(mrpc)]
        )
        names = {"0": "not_entailment", "1": "entailment"}
        write_columns(
            root / "rte" / f"{split}.tsv",
            ("index", "sentence1", "sentence2", "label"),
            [(i, a, b, names[y]) for i, (a, b, y) in enumerate(pair_rows(n, seed + 1))],
        )
        write_columns(
            root / "stsb" / f"{split}.tsv",
            ("index", "genre", "sentence1", "sentence2", "score"),
            [(i, "main", a, b, y) for i, (a, b, y) in enumerate(pair_rows(n, seed + 2, score=True))],
        )
    for split, n, seed in (("train", 150, 31), ("dev", 40, 32), ("test", 40, 33)):
        write_conll(root / "conll2003" / f"{split}.txt", conll_sentences(n, seed))


def assert_clean_failure(result: subprocess.CompletedProcess, *needles: str) -> str:
    """A failed CLI call: non-zero exit, no traceback, one ``error:`` line holding every needle."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
