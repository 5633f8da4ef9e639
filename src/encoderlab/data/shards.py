"""Sharded, parallel tokenization of a pre-training corpus: litdata chunks of token ids with an index.

A corpus (local text files, or a Hugging Face dataset read in streaming mode) is cut into pieces (byte ranges
of the files at line starts, or the data set's own shards); ``litdata.optimize`` tokenizes the pieces on
every core, each worker appending its pieces' token ids, in corpus order, to chunk files of its own. One
shard set, ``cache_dir/shards/<key>/``:

    shards.json   what was built: the source, the counts, every chunk file with its size (read first)
    tokenizer/    the tokenizer the ids come from (tokenizer.json, vocab.txt)
    train/ val/   litdata datasets (``index.json`` + ``chunk-<worker>-<n>.bin``): the token stream of each
                  split, uint16 (int32 when the vocabulary is larger), read back in blocks of any length

The key hashes the source's content (sha256 of each file, as the token cache does), the tokenizer setting,
the limits, the validation split and the chunk size, so the same corpus and settings reuse one shard set.
A set is built in a temporary directory beside its final place and renamed into it when complete, under a
file lock (the processes of a distributed run wait for the one building it): a killed build leaves only a
temporary directory, which is never read and is removed by the next build of that key. Several nodes build
one set together through ``encoderlab.data.shard_nodes``, from the same plan, tokenizer and records.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from encoderlab.data.readers import file_fingerprint, keep_paragraph, line_starts, paragraphs_in_range
from encoderlab.data.tokenizer import load_tokenizer, resolve_tokenizer, save_tokenizer
from encoderlab.errors import UserError
from encoderlab.extras import require
from encoderlab.files import atomic_directory, write_json

FORMAT = 1  # bump when the layout changes: old shard sets are then rebuilt, never misread
MANIFEST = "shards.json"
TOKENIZER_DIR = "tokenizer"
SPLITS = ("train", "val")
INDEX = "index.json"  # litdata's index of one split
PIECE_BYTES = 32 << 20  # a worker's largest unit of work: small enough to balance the cores
MIN_PIECE_BYTES = 1 << 20
ENCODE_BATCH = 2_000  # paragraphs per encode_batch call and per item written (bounded memory per worker)
HELDOUT = "last 1 % of the training paragraphs"


# ------------------------------------------------------------------------------------------ sources


@dataclass(frozen=True)
class CorpusSource:
    """Where one split's text comes from: local files (read in this order), or a Hugging Face dataset split
    (``hub``: path, name, data_files, text_column; read in streaming mode)."""

    files: tuple[str, ...] = ()
    hub: dict | None = None
    split: str = "train"

    def fingerprint(self) -> str:
        if self.files:
            return ",".join(file_fingerprint(f) for f in self.files)
        return "hub:" + json.dumps({"hub": self.hub, "split": self.split}, sort_keys=True, default=str)

    def describe(self) -> str:
        if self.files:
            return ", ".join(self.files)
        return f"{self.hub.get('path')} ({self.hub.get('name') or 'default'}, split {self.split})"


@dataclass(frozen=True)
class ShardSpec:
    """Everything a shard set is built from; ``key()`` hashes it."""

    train: CorpusSource
    val: CorpusSource | None  # None: hold out the last 1 % of the training paragraphs, as data=text_corpus
    train_limit: int | None = None
    val_limit: int | None = None
    tokenizer: str | None = None  # a tokenizer directory; None: train a WordPiece on the first paragraphs
    vocab_size: int = 8192
    lowercase: bool = True
    tokenizer_sample: int = 1_000_000
    chunk_bytes: int = 64 << 20  # the size litdata fills each chunk file to

    def tokenizer_setting(self) -> dict:
        if self.tokenizer is not None:
            tok = load_tokenizer(self.tokenizer, lowercase=self.lowercase)
            return {"given": hashlib.sha256(tok.to_str().encode()).hexdigest()}
        return {"vocab_size": self.vocab_size, "lowercase": self.lowercase, "sample": self.tokenizer_sample}

    def key_parts(self) -> dict:
        """What the key hashes: the settings that make one shard set (those nodes building it share)."""
        return {
            "format": FORMAT,
            "train": self.train.fingerprint(),
            "val": self.val.fingerprint() if self.val else HELDOUT,
            "train_limit": self.train_limit,
            "val_limit": self.val_limit,
            "tokenizer": self.tokenizer_setting(),
            "chunk_bytes": self.chunk_bytes,
        }

    def key(self) -> str:
        return key_of(self.key_parts())


def key_of(parts: dict) -> str:
    """The directory name of the shard set of these key parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


# ------------------------------------------------------------------------------------ pieces of work


@dataclass(frozen=True)
class Piece:
    """One worker's unit of work: a byte range of a file (lines starting in ``[start, end)``) or one shard
    of a hub split; only the paragraphs whose ordinal in the split lies in ``keep`` are tokenized."""

    index: int = 0
    tokenizer: str = ""  # the tokenizer.json the worker loads
    dtype: str = "uint16"
    reports: str = ""  # where the worker writes what it read (or the one line of what went wrong)
    path: str | None = None
    start: int = 0
    end: int = 0
    first: int = 0  # ordinal of the piece's first paragraph (0 when no window needs it)
    keep: tuple[int, int] | None = None
    hub: dict | None = None
    split: str = "train"
    shard: int = 0
    shards: int = 1


def source_pieces(source: CorpusSource, piece_bytes: int) -> list[Piece]:
    """The pieces a source is cut into, in corpus order (no windows yet)."""
    if source.files:
        pieces = []
        for path in source.files:
            cuts = line_starts(path, piece_bytes)
            pieces += [Piece(path=path, start=a, end=b) for a, b in itertools.pairwise(cuts)]
    else:
        shards = hub_stream(source.hub, source.split).n_shards
        pieces = [Piece(hub=source.hub, split=source.split, shard=i, shards=shards) for i in range(shards)]
    return [replace(p, index=i) for i, p in enumerate(pieces)]


def piece_paragraphs(piece: Piece) -> Iterator[tuple[str, int]]:
    """(paragraph, bytes read) of a piece, in order, before its window is applied."""
    if piece.path is not None:
        yield from paragraphs_in_range(piece.path, piece.start, piece.end)
        return
    column = piece.hub.get("text_column", "text")
    stream = hub_stream(piece.hub, piece.split)
    if piece.shards > 1:
        stream = stream.shard(num_shards=piece.shards, index=piece.shard)
    for row in stream:
        text = row.get(column)
        if text is not None and keep_paragraph(str(text)):
            yield str(text).strip(), len(str(text).encode())


def windowed(piece: Piece) -> Iterator[tuple[str, int]]:
    """The piece's paragraphs whose split ordinal lies in ``piece.keep`` (all of them without a window)."""
    if piece.keep is None:
        yield from piece_paragraphs(piece)
        return
    low, high = piece.keep
    for ordinal, (text, size) in enumerate(piece_paragraphs(piece), start=piece.first):
        if ordinal >= high:
            return
        if ordinal >= low:
            yield text, size


def hub_stream(hub: dict, split: str):
    """A Hugging Face dataset split as an iterable (streaming: nothing downloaded ahead of reading)."""
    datasets = require("datasets", for_="data.hub with data=sharded_corpus", or_else="set data.train_file")
    try:
        return datasets.load_dataset(
            hub.get("path"), hub.get("name"), split=split, streaming=True, data_files=hub.get("data_files")
        )
    except Exception as e:
        raise UserError(
            f"hub dataset '{hub.get('path')}' split '{split}' could not be opened for streaming "
            f"({type(e).__name__}) — check data.hub, or set data.train_file to local text"
        ) from None


def count_paragraphs(pieces: list[Piece], workers: int) -> list[int]:
    """Paragraphs in each piece (a reading pass without tokenizing, on ``workers`` processes)."""
    if workers <= 1 or len(pieces) == 1:
        return [_count(p) for p in pieces]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(min(workers, len(pieces))) as pool:
        return pool.map(_count, pieces)


def _count(piece: Piece) -> int:
    return sum(1 for _ in piece_paragraphs(piece))


def windows(pieces: list[Piece], counts: list[int] | None, keep: tuple[int, int] | None) -> list[Piece]:
    """The pieces that hold split ordinals in ``keep``, each knowing the ordinal of its first paragraph
    (all pieces, unwindowed, when there is no window)."""
    if keep is None:
        return pieces
    firsts = [0, *itertools.accumulate(counts)]
    low, high = keep
    chosen = []
    for piece, first, count in zip(pieces, firsts, counts, strict=False):
        if count and first + count > low and first < high:
            chosen.append(replace(piece, first=first, keep=keep))
    return [replace(p, index=i) for i, p in enumerate(chosen)]


# ---------------------------------------------------------------------------------- the workers' job


@cache
def _worker_tokenizer(path: str) -> Tokenizer:
    # One core per worker: the pool of workers is the parallelism.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tok = Tokenizer.from_file(path)
    tok.no_padding()
    tok.no_truncation()
    return tok


def tokenize_piece(piece: Piece) -> Iterator[np.ndarray]:
    """litdata's per-input function: the token ids of the piece's paragraphs, a batch at a time, in order.

    It never raises (litdata would leave workers behind): a failure (bad UTF-8, an unreadable hub shard) is
    written to ``reports/<index>.error`` and raised by the builder once litdata has stopped its workers.
    """
    reports = Path(piece.reports)
    paragraphs = tokens = size = 0
    try:
        tok = _worker_tokenizer(piece.tokenizer)
        texts = windowed(piece)
        while batch := list(itertools.islice(texts, ENCODE_BATCH)):
            encodings = tok.encode_batch([t for t, _ in batch], add_special_tokens=False)
            ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=piece.dtype)
            paragraphs += len(batch)
            tokens += len(ids)
            size += sum(s for _, s in batch)
            if len(ids):
                yield ids
    except Exception as err:
        failure = {"user": isinstance(err, UserError), "message": str(err) or repr(err)}
        write_json(reports / f"{piece.index}.error", failure)
        return
    write_json(reports / f"{piece.index}.json", {"paragraphs": paragraphs, "tokens": tokens, "bytes": size})


# ----------------------------------------------------------------------------------------- building


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created): other processes asking for it wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_workers() -> int:
    """The cores this process may use (SLURM's and cgroups' CPU sets included)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def build_shards(
    spec: ShardSpec,
    cache_dir: str,
    workers: int | None = None,
    on_start: Callable[[str], None] | None = None,
    piece_bytes: int | None = None,
) -> ShardSet:
    """The shard set of ``spec`` under ``cache_dir/shards``: reused when built before, else built with
    ``workers`` processes (default: every core) from pieces of about ``piece_bytes`` of text (which only
    balance the work; default: four per worker, 1 to 32 MiB each). ``on_start`` hears the directory when a
    build begins."""
    root = Path(cache_dir) / "shards"
    key = spec.key()
    final = root / key
    if (final / MANIFEST).is_file():
        return open_shards(str(final), cache_dir, reused=True)
    with exclusive_lock(root / f".{key}.lock"):
        if (final / MANIFEST).is_file():  # another process built it while this one waited
            return open_shards(str(final), cache_dir, reused=True)
        for stale in root.glob(f".{key}.*.tmp"):  # a killed build's leftovers: never complete
            shutil.rmtree(stale, ignore_errors=True)
        if on_start is not None:
            on_start(str(final))
        with atomic_directory(final, replace=False) as tmp:
            _build(spec, key, tmp, cache_dir, workers or default_workers(), piece_bytes)
    return open_shards(str(final), cache_dir)


@dataclass(frozen=True)
class BuildPlan:
    """What a build tokenizes: each split's pieces in corpus order (windows applied), and the tokenizer's
    vocabulary size and id dtype. Decided once per shard set, however many nodes tokenize it."""

    pieces: dict[str, list[Piece]]
    vocab_size: int
    dtype: str

    def to_json(self) -> dict:
        # The per-run fields (tokenizer path, dtype, reports) are filled in by whoever tokenizes.
        own = ("tokenizer", "dtype", "reports")
        pieces = {
            split: [{k: v for k, v in asdict(p).items() if k not in own} for p in listed]
            for split, listed in self.pieces.items()
        }
        return {"pieces": pieces, "vocab_size": self.vocab_size, "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: dict) -> BuildPlan:
        def piece(d: dict) -> Piece:
            return Piece(**{**d, "keep": tuple(d["keep"]) if d["keep"] is not None else None})

        pieces = {split: [piece(d) for d in listed] for split, listed in data["pieces"].items()}
        return cls(pieces, data["vocab_size"], data["dtype"])


def _build(
    spec: ShardSpec, key: str, out: Path, cache_dir: str, workers: int, piece_bytes: int | None
) -> None:
    started = time.perf_counter()
    plan = plan_build(spec, cache_dir, workers, piece_bytes, out / TOKENIZER_DIR)
    tokenizer_json = out / TOKENIZER_DIR / "tokenizer.json"
    splits, processes = {}, 1
    for split in SPLITS:
        pieces = plan.pieces[split]
        processes = max(processes, min(workers, len(pieces)))
        splits[split] = tokenize_split(spec, split, pieces, tokenizer_json, plan.dtype, out, workers)
    build = {
        "workers": processes,  # those that had work: at most one per piece
        "seconds": round(time.perf_counter() - started, 3),
        "litdata": litdata_version(),
    }
    # Last: a directory without it is never read as a shard set.
    write_json(out / MANIFEST, manifest(spec, key, plan, out / TOKENIZER_DIR, splits, build))


def plan_build(
    spec: ShardSpec,
    cache_dir: str,
    workers: int,
    piece_bytes: int | None,
    tokenizer_dir: Path,
    nodes: int = 1,
) -> BuildPlan:
    """Cut the corpus into pieces (default: four per worker of each of ``nodes`` nodes, 1 to 32 MiB each),
    count the paragraphs the windows need, and decide the tokenizer (saved into ``tokenizer_dir``)."""
    if piece_bytes is None:
        size = sum(Path(f).stat().st_size for f in spec.train.files)
        piece_bytes = min(PIECE_BYTES, max(MIN_PIECE_BYTES, size // (4 * workers * nodes) + 1))
    train = source_pieces(spec.train, piece_bytes)
    # Windows of paragraph ordinals (a limit, the held-out 1 %) need each piece's count: a reading pass.
    train_counts = train_keep = val_keep = None
    if spec.val is None or spec.train_limit is not None:
        train_counts = count_paragraphs(train, workers)
        total = min(sum(train_counts), spec.train_limit or sum(train_counts))
        train_keep = (0, total)
        if spec.val is None:
            if total < 2:
                raise UserError(
                    f"corpus {spec.train.describe()} has {total} paragraph(s); need 2+ to hold out validation "
                    "— add text or set data.val_file"
                )
            n_val = max(1, total // 100)
            train_keep = (0, total - n_val)
            val_keep = (
                total - n_val,
                total if spec.val_limit is None else min(total, total - n_val + spec.val_limit),
            )
    if spec.val is None:
        val, val_counts = train, train_counts
    else:
        val = source_pieces(spec.val, piece_bytes)
        val_counts = count_paragraphs(val, workers) if spec.val_limit is not None else None
        val_keep = (0, spec.val_limit) if spec.val_limit is not None else None

    tok = _tokenizer(spec, train, train_keep, cache_dir)
    save_tokenizer(tok, tokenizer_dir)
    pieces = {"train": windows(train, train_counts, train_keep), "val": windows(val, val_counts, val_keep)}
    dtype = "uint16" if tok.get_vocab_size() <= 65535 else "int32"
    return BuildPlan(pieces, tok.get_vocab_size(), dtype)


def tokenize_split(
    spec: ShardSpec,
    split: str,
    pieces: list[Piece],
    tokenizer_json: Path,
    dtype: str,
    out: Path,
    workers: int,
    allow_empty: bool = False,
) -> dict:
    """Tokenize ``pieces`` into the litdata dataset ``out/<split>``; its manifest record. ``allow_empty``:
    no text is no error (one node's share of a split may hold none)."""
    reports = out / f"reports-{split}"
    reports.mkdir(parents=True)
    work = dict(tokenizer=str(tokenizer_json), dtype=dtype, reports=str(reports))
    pieces = [replace(p, index=i, **work) for i, p in enumerate(pieces)]
    _tokenize(pieces, out / split, spec.chunk_bytes, workers)
    source = spec.val if split == "val" and spec.val is not None else spec.train
    record = _split_record(out / split, reports, len(pieces), source, split, allow_empty)
    shutil.rmtree(reports)
    return record


def manifest(
    spec: ShardSpec, key: str, plan: BuildPlan, tokenizer_dir: Path, splits: dict, build: dict
) -> dict:
    """The ``shards.json`` of a set built from ``plan``: the splits' records and how it was built."""
    return {
        "format": FORMAT,
        "key": key,
        "tokenizer": TOKENIZER_DIR,
        "tokenizer_files": sorted(p.name for p in tokenizer_dir.iterdir()),
        "vocab_size": plan.vocab_size,
        "dtype": plan.dtype,
        "source": {"train": spec.train.describe(), "val": spec.val.describe() if spec.val else HELDOUT},
        "settings": {
            "train_limit": spec.train_limit,
            "val_limit": spec.val_limit,
            "tokenizer": spec.tokenizer_setting(),
            "chunk_bytes": spec.chunk_bytes,
        },
        "splits": splits,
        "build": build,
    }


def litdata_version() -> str:
    import litdata

    return litdata.__version__


def _tokenizer(
    spec: ShardSpec, pieces: list[Piece], keep: tuple[int, int] | None, cache_dir: str
) -> Tokenizer:
    """The given tokenizer, or a WordPiece trained on the first ``tokenizer_sample`` training paragraphs
    (cached under ``cache_dir/tokenizers`` like data=text_corpus's)."""
    if spec.tokenizer is not None:
        return load_tokenizer(spec.tokenizer, lowercase=spec.lowercase)
    sample = spec.tokenizer_sample if keep is None else min(spec.tokenizer_sample, keep[1])

    def first_paragraphs() -> Iterator[str]:
        texts = itertools.chain.from_iterable(piece_paragraphs(p) for p in pieces)
        return (t for t, _ in itertools.islice(texts, sample))

    fingerprint = f"{spec.train.fingerprint()}:first={sample}"
    tok, _ = resolve_tokenizer(
        None, first_paragraphs, spec.vocab_size, spec.lowercase, cache_dir, fingerprint
    )
    return tok


def _tokenize(pieces: list[Piece], out: Path, chunk_bytes: int, workers: int) -> None:
    """litdata.optimize over the pieces into ``out``: each worker takes a contiguous run of pieces, so the
    chunks in index order hold the token stream in corpus order."""
    litdata = require(
        "litdata", for_="data=sharded_corpus (sharded tokenization)", or_else="use data=text_corpus"
    )
    out.mkdir()
    if not pieces:
        return
    litdata.optimize(
        fn=tokenize_piece,
        inputs=pieces,
        output_dir=str(out),
        chunk_bytes=chunk_bytes,
        num_workers=max(1, min(workers, len(pieces))),
        item_loader=litdata.TokensLoader(),
        keep_data_ordered=True,
        reorder_files=False,
        verbose=False,
        start_method="fork",  # spawning workers would re-import torch and litdata in each (seconds apiece)
    )


def _split_record(
    directory: Path, reports: Path, n_pieces: int, source: CorpusSource, split: str, allow_empty: bool = False
) -> dict:
    errors = [json.loads(p.read_text()) for p in sorted(reports.glob("*.error"))]
    for error in errors:  # the user's mistakes (a bad byte) first: they say what to fix
        if error["user"]:
            raise UserError(error["message"])
    if errors:
        raise RuntimeError(f"tokenizing {source.describe()} failed: {errors[0]['message']}")
    stats = [json.loads(p.read_text()) for p in reports.glob("*.json")]
    if len(stats) != n_pieces:
        raise UserError(
            f"tokenizing {source.describe()} stopped after {len(stats)} of {n_pieces} pieces — run it again"
        )
    index = directory / INDEX
    if not index.is_file() and not allow_empty:
        raise UserError(
            f"the {split} split of {source.describe()} has no text — point it at a non-empty corpus"
        )
    chunks = json.loads(index.read_text())["chunks"] if index.is_file() else []
    return {
        "paragraphs": sum(s["paragraphs"] for s in stats),
        "tokens": sum(s["tokens"] for s in stats),
        "bytes": sum(s["bytes"] for s in stats),
        "chunks": [
            {"file": c["filename"], "tokens": c["dim"], "bytes": (directory / c["filename"]).stat().st_size}
            for c in chunks
        ],
    }


# ------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class ShardSet:
    """A built shard set: ``location`` is where litdata reads it (a directory, or an object-store URL such as
    ``s3://bucket/shards/<key>``); ``local`` holds its manifest and tokenizer on this machine."""

    location: str
    local: Path
    manifest: dict = field(repr=False)
    reused: bool = False

    @property
    def tokenizer_dir(self) -> Path:
        return self.local / self.manifest["tokenizer"]

    def split(self, name: str) -> str:
        return f"{self.location.rstrip('/')}/{name}"

    def tokens(self, split: str) -> int:
        return self.manifest["splits"][split]["tokens"]

    def num_blocks(self, split: str, block: int) -> int:
        """Blocks of ``block`` tokens in a split (litdata's TokensLoader cuts them inside each chunk)."""
        return sum(c["tokens"] // block for c in self.manifest["splits"][split]["chunks"])

    def summary(self) -> str:
        parts = []
        for split in SPLITS:
            s = self.manifest["splits"][split]
            parts.append(
                f"{split}: {s['paragraphs']:,} paragraphs, {s['tokens']:,} tokens in {len(s['chunks'])} chunks"
            )
        return "; ".join(parts)


def is_url(location: str) -> bool:
    return "://" in location or location.startswith("local:")


def open_shards(location: str, cache_dir: str, reused: bool = False) -> ShardSet:
    """The shard set at ``location``, checked: its manifest, and (on local disk) every chunk file present
    with the size it was written with. A problem is one line naming the file and the fix (rebuild)."""
    local = _fetch_manifest(location, cache_dir) if is_url(location) else Path(location)
    manifest_path = local / MANIFEST
    rebuild = f"rebuild it: delete {location} and run encoderlab-shard (or the training run) again"
    if not manifest_path.is_file():
        # Imported here: the multi-node build is written on top of this module.
        from encoderlab.data.shard_nodes import progress_note

        raise UserError(
            (None if is_url(location) else progress_note(local))
            or f"no shard set at {location} (no {MANIFEST}) — build one with encoderlab-shard and pass its "
            "directory as data.shards, or set data.shards=null to build from data.train_file"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        chunks = {split: manifest["splits"][split]["chunks"] for split in SPLITS}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{manifest_path} is unreadable ({type(err).__name__}) — {rebuild}") from None
    if manifest.get("format") != FORMAT:
        raise UserError(
            f"shard set {location} has format {manifest.get('format')}, this encoderlab reads {FORMAT} — {rebuild}"
        )
    if not is_url(location):
        for split, listed in chunks.items():
            for path in [local / split / INDEX, *(local / split / c["file"] for c in listed)]:
                if not path.is_file():
                    raise UserError(f"shard {path} is missing — {rebuild}")
            for c in listed:
                size = (local / split / c["file"]).stat().st_size
                if size != c["bytes"]:
                    raise UserError(
                        f"shard {local / split / c['file']} is {size} bytes, {c['bytes']} when written "
                        f"(truncated or overwritten) — {rebuild}"
                    )
    return ShardSet(location, local, manifest, reused)


def _fetch_manifest(url: str, cache_dir: str) -> Path:
    """A local copy of a remote shard set's manifest and tokenizer (the chunks stream through litdata)."""
    local = Path(cache_dir) / "shards" / "remote" / hashlib.sha256(url.encode()).hexdigest()[:16]
    if (local / MANIFEST).is_file():
        return local
    with atomic_directory(local, replace=False) as tmp:
        _download(f"{url.rstrip('/')}/{MANIFEST}", tmp / MANIFEST)
        manifest = json.loads((tmp / MANIFEST).read_text())
        for name in manifest.get("tokenizer_files", ["tokenizer.json"]):
            _download(f"{url.rstrip('/')}/{manifest['tokenizer']}/{name}", tmp / manifest["tokenizer"] / name)
    return local


def _download(remote: str, local: Path) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        if remote.startswith("local:"):  # litdata's stand-in for an object store, a directory
            shutil.copyfile(remote.removeprefix("local:"), local)
            return
        require("litdata", for_="data.shards on an object store", or_else="copy the shards to local disk")
        from litdata.streaming.fs_provider import _get_fs_provider

        _get_fs_provider(remote).download_file(remote, str(local))
    except UserError:
        raise
    except Exception as err:
        raise UserError(
            f"could not read {remote} ({type(err).__name__}: {str(err)[:200]}) — check the URL and the "
            "store's credentials (e.g. AWS_* for s3://)"
        ) from None
