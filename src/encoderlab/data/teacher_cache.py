"""A teacher encoder's sentence vectors for a list of texts, computed once and read from the cache after.

The teacher is anything ``encoderlab-embed`` reads (an encoder export, a run, a Hugging Face or
sentence-transformers directory, ``minilm``) and embeds with its own convention (MiniLM: mean pooling, unit
length). The cache key is what decides the vectors: the teacher's weights, tokenizer and pooling, the texts
themselves and the longest input, so a retrained teacher or an edited file never reads stale vectors, and
moving or renaming either does not recompute them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from encoderlab.embedding.embedder import Embedder
from encoderlab.files import atomic_file

log = logging.getLogger("encoderlab")


def teacher_fingerprint(teacher: Embedder, max_seq_len: int | None) -> str:
    """sha256 of the teacher's weights, tokenizer and embedding settings (pooling, unit length, length)."""
    h = hashlib.sha256()
    for name, tensor in sorted(teacher.encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    h.update(teacher.source.tokenizer.to_str().encode())
    settings = teacher.settings(max_seq_len=max_seq_len)
    h.update(json.dumps([settings.pooling, settings.normalize, settings.max_seq_len]).encode())
    return h.hexdigest()


def texts_fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()


def teacher_vectors(
    texts: Sequence[str],
    teacher: str,
    cache_dir: str | Path,
    *,
    batch_size: int = 64,
    max_seq_len: int | None = None,
    device: str = "auto",
) -> np.ndarray:
    """float32 [len(texts), teacher dims], one row per text in order (memory-mapped from the cache)."""
    embedder = Embedder(teacher, device=device)
    key = hashlib.sha256(
        f"{teacher_fingerprint(embedder, max_seq_len)}:{texts_fingerprint(texts)}".encode()
    ).hexdigest()
    path = Path(cache_dir) / "teacher_vectors" / f"{key}.npy"
    if path.is_file():
        vectors = np.load(path, mmap_mode="r")
        if vectors.shape[0] == len(texts):
            log.info("teacher vectors of %s texts read from %s", f"{len(texts):,}", path)
            return vectors
    started = time.perf_counter()
    vectors = embedder.encode(texts, batch_size=batch_size, max_seq_len=max_seq_len, progress=True)
    # A second run, or one killed half-way, never reads a partial file.
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, vectors.astype(np.float32))
    log.info(
        "teacher %s embedded %s texts in %.0f s (cached in %s)",
        teacher,
        f"{len(texts):,}",
        time.perf_counter() - started,
        path,
    )
    return np.load(path, mmap_mode="r")
