"""Tokenize once, cache token ids on disk, memory-map them on every later run.

Layout of one cache entry ``cache_dir/tokens/<key>/``:
``ids.npy`` (all sequences concatenated; uint16 when the vocab fits, else int32),
``offsets.npy`` (int64, n+1; sequence i is ``ids[offsets[i]:offsets[i+1]]``) and, for text pairs,
``type_ids.npy`` (uint8, aligned with ``ids``) and, when truncating, ``truncated.npy`` (bool, n: which
sequences were cut). The key hashes the tokenizer's full JSON, the
caller's ``key_parts`` (data fingerprint, limits, ...) and the encoding settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from encoderlab.data.tokenizer import encoding_copy
from encoderlab.files import atomic_directory

CHUNK = 10_000  # texts per encode_batch call: big enough for Rust-side parallelism, bounded memory


class TokenIds:
    """A read-only list of token-id sequences backed by a flat memory-mapped array."""

    def __init__(
        self,
        ids: np.ndarray,
        offsets: np.ndarray,
        type_ids: np.ndarray | None = None,
        directory: str | None = None,
        from_cache: bool = False,
        truncated: np.ndarray | None = None,
    ):
        self.ids = ids
        self.offsets = offsets
        self.type_ids = type_ids
        self.directory = directory
        self.from_cache = from_cache
        self.truncated = truncated  # which sequences max_length cut; None: not truncated, or not recorded

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def span(self, start: int, stop: int) -> np.ndarray:
        """Tokens ``[start, stop)`` of the flat stream (a copy).

        Read from the cache file with ``pread``: pages read through the memory map stay mapped into this
        process (with their neighbours), so a run sampling blocks at random from a large corpus would see
        its resident set grow with the corpus; pages read with ``pread`` belong to the page cache only.
        """
        if self.directory is None or not isinstance(self.ids, np.memmap):
            return np.array(self.ids[start:stop])
        if getattr(self, "_ids_file", None) is None:
            self._ids_file = NpyFile(Path(self.directory) / "ids.npy")
        return self._ids_file.read(start, stop)

    def type_ids_of(self, i: int) -> np.ndarray | None:
        if self.type_ids is None:
            return None
        return self.type_ids[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    # Pickle by path so DataLoader workers re-open the memmap instead of receiving a copy of the data.
    def __getstate__(self) -> dict:
        if self.directory is None:
            return self.__dict__
        return {"directory": self.directory, "from_cache": self.from_cache}

    def __setstate__(self, state: dict) -> None:
        if "ids" in state:
            self.__dict__.update(state)
            return
        loaded = _load(Path(state["directory"]))
        self.__dict__.update(loaded.__dict__)
        self.from_cache = state["from_cache"]


class NpyFile:
    """Slices of a one-dimensional ``.npy`` file read with ``os.pread`` (one open descriptor per process)."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                version, np.lib.format.read_array_header_2_0
            )
            _, _, self.dtype = read_header(f)
            self.data_offset = f.tell()
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)

    def read(self, start: int, stop: int) -> np.ndarray:
        size = self.dtype.itemsize
        raw = os.pread(self.fd, (stop - start) * size, self.data_offset + start * size)
        return np.frombuffer(raw, dtype=self.dtype).copy()

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.close(self.fd)


def cache_key(tokenizer: Tokenizer, key_parts: Sequence[str], **settings) -> str:
    h = hashlib.sha256(tokenizer.to_str().encode())
    h.update(json.dumps([list(map(str, key_parts)), settings], sort_keys=True).encode())
    return h.hexdigest()


def cached_token_ids(
    texts: Callable[[], Sequence[str] | Sequence[tuple[str, str]]],
    tokenizer: Tokenizer,
    cache_dir: str,
    key_parts: list[str],
    add_special_tokens: bool,
    max_length: int | None = None,
    pairs: bool = False,
) -> TokenIds:
    """Token ids of ``texts()``, computed once and memory-mapped from ``cache_dir`` afterwards.

    ``texts`` is only called on a cache miss. ``max_length`` truncates each encoded sequence
    (special tokens included; pairs longest-first). ``pairs=True`` means ``texts()`` yields
    ``(a, b)`` tuples and token type ids are stored too.
    """
    key = cache_key(
        tokenizer, key_parts, add_special_tokens=add_special_tokens, max_length=max_length, pairs=pairs
    )
    final = Path(cache_dir) / "tokens" / key
    if (final / "offsets.npy").is_file():
        return _load(final, from_cache=True)

    enc_tok = encoding_copy(tokenizer, max_length)
    dtype = np.uint16 if tokenizer.get_vocab_size() <= 65535 else np.int32

    items = list(texts())
    id_chunks, type_chunks, lengths, truncated = [], [], [], []
    for start in range(0, len(items), CHUNK):
        batch = items[start : start + CHUNK]
        encodings = enc_tok.encode_batch(batch, add_special_tokens=add_special_tokens)
        for e in encodings:
            lengths.append(len(e.ids))
            truncated.append(bool(e.overflowing))  # what was cut off (the data's truncation report)
        id_chunks.append(np.fromiter((t for e in encodings for t in e.ids), dtype=dtype))
        if pairs:
            type_chunks.append(np.fromiter((t for e in encodings for t in e.type_ids), dtype=np.uint8))
    ids = np.concatenate(id_chunks) if id_chunks else np.zeros(0, dtype=dtype)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])

    with atomic_directory(final, replace=False) as tmp:
        np.save(tmp / "ids.npy", ids)
        if pairs:
            np.save(
                tmp / "type_ids.npy", np.concatenate(type_chunks) if type_chunks else np.zeros(0, np.uint8)
            )
        if max_length is not None:
            np.save(tmp / "truncated.npy", np.asarray(truncated, dtype=bool))
        # offsets.npy is the completeness marker checked above, so it is written last.
        np.save(tmp / "offsets.npy", offsets)
    return _load(final, from_cache=False)


def _mmap(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r")
    except ValueError:  # numpy cannot mmap a zero-length array
        return np.load(path)


def _load(directory: Path, from_cache: bool = True) -> TokenIds:
    type_path, truncated_path = directory / "type_ids.npy", directory / "truncated.npy"
    return TokenIds(
        ids=_mmap(directory / "ids.npy"),
        offsets=_mmap(directory / "offsets.npy"),
        type_ids=_mmap(type_path) if type_path.is_file() else None,
        directory=str(directory),
        from_cache=from_cache,
        truncated=np.load(truncated_path) if truncated_path.is_file() else None,
    )
