"""Token shards: the token cache's stream, built on several workers, content-keyed and reused; a build that
dies publishes nothing; a damaged shard set is one clear line."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest

from encoderlab.cli.shard import main as shard_main
from encoderlab.data import shards as shards_module
from encoderlab.data.corpus import TextCorpusDataModule
from encoderlab.data.readers import line_starts, paragraphs_in_range, read_corpus
from encoderlab.data.shards import MANIFEST, CorpusSource, ShardSpec, build_shards, open_shards
from encoderlab.data.tokenizer import load_tokenizer, save_tokenizer, train_wordpiece
from encoderlab.errors import UserError
from tests.conftest import write_corpus

litdata = pytest.importorskip("litdata")


def token_stream(shards, split: str) -> np.ndarray:
    """A split's whole token stream, in order, read back through litdata."""
    tokens = litdata.StreamingDataset(shards.split(split), item_loader=litdata.TokensLoader(block_size=1))
    return np.concatenate([np.asarray(t) for t in tokens]) if len(tokens) else np.zeros(0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return write_corpus(root / "train.txt", 300, seed=1), write_corpus(root / "valid.txt", 30, seed=2)


def test_shards_hold_the_token_cache_stream_and_are_reused(corpus, tmp_path, monkeypatch):
    train, _ = corpus
    spec = ShardSpec(CorpusSource((str(train),)), None, vocab_size=400)
    # Pieces of 8 KiB: the corpus is cut into several, tokenized by two workers into chunks of their own.
    shards = build_shards(spec, str(tmp_path / "cache"), workers=2, piece_bytes=8 << 10)
    assert shards.manifest["build"]["workers"] == 2 and not shards.reused
    assert len({c["file"].split("-")[1] for c in shards.manifest["splits"]["train"]["chunks"]}) == 2

    # The token stream and held-out last 1 % of data=text_corpus with the same tokenizer (WordPiece training
    # itself is not deterministic from run to run).
    reference = TextCorpusDataModule(
        train_file=str(train),
        tokenizer=str(shards.tokenizer_dir),
        max_seq_len=32,
        cache_dir=str(tmp_path / "ref"),
    )
    reference.prepare()
    for split, dataset in (("train", reference.train_dataset), ("val", reference.val_dataset)):
        assert np.array_equal(token_stream(shards, split), dataset.token_ids.ids), split
    counts = {s: shards.manifest["splits"][s]["paragraphs"] for s in ("train", "val")}
    assert counts == {"train": 297, "val": 3} == {"train": 300 - 3, "val": len(read_corpus(train)) // 100}

    def no_second_build(*args):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(shards_module, "_build", no_second_build)
    again = build_shards(spec, str(tmp_path / "cache"), workers=1)
    assert again.reused and again.location == shards.location
    # Other content, another limit, another tokenizer setting: other keys.
    changed = tmp_path / "changed.txt"
    changed.write_text(train.read_text() + "one more paragraph\n")
    others = [
        ShardSpec(CorpusSource((str(changed),)), None, vocab_size=400),
        ShardSpec(spec.train, None, train_limit=100, vocab_size=400),
        ShardSpec(spec.train, None, vocab_size=500),
    ]
    assert len({spec.key(), *(o.key() for o in others)}) == 4


def test_limits_and_a_val_file_select_the_paragraphs_text_corpus_would(corpus, tmp_path):
    train, valid = corpus
    spec = ShardSpec(CorpusSource((str(train),)), CorpusSource((str(valid),)), 120, 7, vocab_size=400)
    shards = build_shards(spec, str(tmp_path / "cache"), workers=2, piece_bytes=4 << 10)
    reference = TextCorpusDataModule(
        train_file=str(train),
        val_file=str(valid),
        train_limit=120,
        val_limit=7,
        tokenizer=str(shards.tokenizer_dir),
        max_seq_len=32,
        cache_dir=str(tmp_path / "ref"),
    )
    reference.prepare()
    assert shards.manifest["splits"]["train"]["paragraphs"] == 120
    assert shards.manifest["splits"]["val"]["paragraphs"] == 7
    for split, dataset in (("train", reference.train_dataset), ("val", reference.val_dataset)):
        assert np.array_equal(token_stream(shards, split), dataset.token_ids.ids), split


def test_a_build_that_dies_publishes_nothing_and_the_next_starts_clean(corpus, tmp_path, monkeypatch):
    train, _ = corpus
    spec = ShardSpec(CorpusSource((str(train),)), None, vocab_size=400)
    cache, key = tmp_path / "cache", spec.key()
    root = cache / "shards"
    # What a build killed mid-way leaves: its temporary directory, chunks written, no manifest.
    leftover = root / f".{key}.killed.tmp"
    (leftover / "train").mkdir(parents=True)
    (leftover / "train" / "chunk-0-0.bin").write_bytes(b"\0" * 64)
    with pytest.raises(UserError, match="no shard set"):
        open_shards(str(leftover), str(cache))

    real_tokenize = shards_module._tokenize

    def die_on_val(pieces, out, chunk_bytes, workers):
        if out.name == "val":
            raise KeyboardInterrupt  # after the train split's chunks were written
        real_tokenize(pieces, out, chunk_bytes, workers)

    monkeypatch.setattr(shards_module, "_tokenize", die_on_val)
    with pytest.raises(KeyboardInterrupt):
        build_shards(spec, str(cache), workers=1)
    # Nothing published; the killed build's leftovers removed when this one started, its own when it died.
    assert not (root / key).exists() and not list(root.glob(f".{key}.*.tmp"))

    monkeypatch.setattr(shards_module, "_tokenize", real_tokenize)
    shards = build_shards(spec, str(cache), workers=1)
    assert (root / key / MANIFEST).is_file() and not list(root.glob(f".{key}.*.tmp"))
    assert shards.num_blocks("train", 30) > 0


def test_a_missing_truncated_or_unreadable_shard_is_one_line_naming_it(corpus, tmp_path, capsys):
    train, _ = corpus
    built = build_shards(ShardSpec(CorpusSource((str(train),)), None, vocab_size=400), str(tmp_path / "c"))

    def error_line(location) -> str:
        capsys.readouterr()
        args = ["data=sharded_corpus", f"data.train_file={train}", f"data.shards={location}"]
        assert shard_main([*args, f"data.cache_dir={tmp_path / 'c'}"]) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[0]

    def damaged(name: str):
        copy = tmp_path / name
        shutil.copytree(built.location, copy)
        first = json.loads((copy / MANIFEST).read_text())["splits"]["train"]["chunks"][0]["file"]
        return copy, copy / "train" / first

    copy, chunk = damaged("truncated")
    chunk.write_bytes(chunk.read_bytes()[:-10])
    line = error_line(copy)
    assert f"shard {chunk} is" in line and "truncated" in line and f"delete {copy}" in line

    copy, chunk = damaged("missing")
    chunk.unlink()
    assert error_line(copy) == (
        f"error: shard {chunk} is missing — rebuild it: delete {copy} and run encoderlab-shard (or the "
        "training run) again"
    )

    copy, _ = damaged("unreadable")
    (copy / MANIFEST).write_text('{"format": 1, "splits": ')
    assert f"{copy / MANIFEST} is unreadable" in error_line(copy)
    assert "no shard set at" in error_line(tmp_path / "nowhere")


def test_a_hub_dataset_is_streamed_shard_by_shard(corpus, tmp_path):
    pytest.importorskip("datasets")
    train, valid = corpus
    # A local stand-in for a hub dataset: the `text` builder streams two files as two shards.
    hub = {"path": "text", "data_files": {"train": [str(train), str(valid)]}, "text_column": "text"}
    spec = ShardSpec(CorpusSource(hub=hub), CorpusSource((str(valid),)), vocab_size=400)
    shards = build_shards(spec, str(tmp_path / "cache"), workers=2)
    assert shards.manifest["build"]["workers"] == 2
    paragraphs = read_corpus(train) + read_corpus(valid)
    assert shards.manifest["splits"]["train"]["paragraphs"] == len(paragraphs)
    tok = load_tokenizer(shards.tokenizer_dir)
    expected = [i for e in tok.encode_batch(paragraphs, add_special_tokens=False) for i in e.ids]
    assert token_stream(shards, "train").tolist() == expected


def test_pieces_cut_at_line_starts_read_the_corpus_once_and_report_bad_bytes(tmp_path):
    text = "\ufeff = Title = \n" + "".join(f"paragraph number {i} with some words\n\n" for i in range(200))
    path = tmp_path / "bom.txt"
    path.write_text(text, encoding="utf-8")
    cuts = line_starts(path, 97)  # pieces of about 97 bytes: most cut mid-line, moved to the next line start
    assert len(cuts) > 20 and cuts[-1] == path.stat().st_size
    pieces = [t for a, b in itertools.pairwise(cuts) for t, _ in paragraphs_in_range(path, a, b)]
    assert pieces == read_corpus(path)

    # A bad byte fails the build with read_corpus's line, from inside the tokenizing worker that met it
    # (a given tokenizer and a val file: nothing else reads the training text first).
    save_tokenizer(train_wordpiece(read_corpus(path), vocab_size=100), tmp_path / "tok")
    path.write_bytes(path.read_bytes().replace(b"number 150", b"number \xff50"))
    with pytest.raises(UserError) as err:
        read_corpus(path)
    spec = ShardSpec(CorpusSource((str(path),)), CorpusSource((str(path),)), tokenizer=str(tmp_path / "tok"))
    with pytest.raises(UserError) as built:
        build_shards(spec, str(tmp_path / "cache"), workers=2, piece_bytes=1 << 10)
    assert str(built.value) == str(err.value) and "byte offset" in str(err.value)
