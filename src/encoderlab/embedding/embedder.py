"""Texts → one fixed-size vector each with a trained encoder: ``Embedder(source).encode(texts)``.

Four steps, each its own method so another can slot in between (windows of long documents):

1. ``tokenize``: token ids per text, ``[CLS] ... [SEP]`` as in training, truncated to ``max_seq_len``;
2. ``batches``: the texts in order of token length, ``batch_size`` at a time, so a batch pads to within a
   token or two of its longest text instead of to the longest text of the whole input;
3. ``forward``: the padded batch through the encoder (eval mode, inference mode) → hidden states;
4. ``pool``: one vector per text by ``models/heads.py``'s ``pool`` (the same function classifiers use),
   scaled to unit length with ``normalize``.

The vectors come back in input order whatever the batching; padding never changes them (the attention
mask keeps padded positions out of every real token's attention and out of the pooling).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from encoderlab.data.tokenizer import encoding_copy, special_token_ids
from encoderlab.devices import resolve_device
from encoderlab.embedding.convention import POOLINGS
from encoderlab.embedding.progress import Progress
from encoderlab.embedding.record import EmbeddingRecord, Settings
from encoderlab.embedding.source import EncoderSource, load_source
from encoderlab.errors import UserError
from encoderlab.models.heads import pool
from encoderlab.models.kernels import set_cpu_kernels
from encoderlab.training.kernel_calibration import default_cache, measured_choice
from encoderlab.validate import at_least, between, boolean, check, one_of

TOKENIZE_CHUNK = 8192  # texts per call of the Rust tokenizer: parallel inside, bounded memory outside


class Embedder:
    """A source's encoder and tokenizer, held for embedding texts (load once, encode many times).

    ``source``: an encoder export, a pre-training or fine-tuned run directory, a Hugging Face model
    directory, or ``minilm`` (see :mod:`encoderlab.embedding.source`); ``device``: ``cpu``, ``cuda``,
    ``cuda:N`` or ``auto``.
    """

    def __init__(self, source: str | os.PathLike | EncoderSource, device: str | torch.device = "cpu") -> None:
        self.source = source if isinstance(source, EncoderSource) else load_source(source)
        self.device = resolve_device(device, key="device")
        self.encoder = self.source.encoder.to(self.device).eval()
        self.pad_id = special_token_ids(self.source.tokenizer)["pad"]
        self._tokenizers: dict[int, Tokenizer] = {}
        self.kernels: dict | None = None  # the CPU kernels, chosen at the first batch (kernel_choice)

    @property
    def dims(self) -> int:
        return self.source.dims

    def settings(
        self, pooling: str | None = None, normalize: bool | None = None, max_seq_len: int | None = None
    ) -> Settings:
        """What ``encode`` uses for these arguments: each None becomes the source's own default
        (:mod:`encoderlab.embedding.convention`); a bad value is a one-line UserError naming it."""
        check("pooling", pooling, one_of(*POOLINGS), optional=True)
        check("normalize", normalize, boolean, optional=True)
        positions = self.encoder.config.max_sequence_length
        check("max_seq_len", max_seq_len, between(2, positions, "the encoder's positions"), optional=True)
        convention = self.source.convention
        if pooling is None and convention.pooling is None:
            raise UserError(
                convention.refusal or f"{self.source.source} has no default pooling — pass pooling="
            )
        return Settings(
            pooling=pooling if pooling is not None else convention.pooling,
            normalize=normalize if normalize is not None else convention.normalize,
            max_seq_len=max_seq_len if max_seq_len is not None else self.source.max_seq_len,
        )

    def record(self, settings: Settings, count: int, ids: str | None = None) -> EmbeddingRecord:
        """What ``count`` vectors made with ``settings`` are (written beside them)."""
        return EmbeddingRecord(
            source=self.source.source,
            source_kind=self.source.kind,
            source_path=str(self.source.path),
            pooling=settings.pooling,
            normalize=settings.normalize,
            max_seq_len=settings.max_seq_len,
            dims=self.dims,
            count=count,
            ids=ids,
        )

    def encode(
        self,
        texts: Sequence[str] | str,
        batch_size: int = 32,
        pooling: str | None = None,
        normalize: bool | None = None,
        max_seq_len: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """float32 [n, hidden], one row per text in input order (a single string is one text: [1, hidden]).

        ``pooling`` (``cls``, ``mean``, ``max``, ``last``), ``normalize`` and ``max_seq_len`` default to the
        source's own (:meth:`settings`); ``progress`` shows a bar on a terminal, plain lines elsewhere.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        check("batch_size", batch_size, at_least(1))
        settings = self.settings(pooling, normalize, max_seq_len)
        sequences = self.tokenize(texts, settings.max_seq_len)
        return self.vectors(sequences, settings, batch_size, progress).numpy()

    # ---------------------------------------------------------------------------------------- the steps

    def tokenize(self, texts: Sequence[str], max_seq_len: int | None) -> list[np.ndarray]:
        """Token ids of each text with its special tokens, at most ``max_seq_len`` (None: untruncated)."""
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise UserError(f"texts[{i}] is {type(text).__name__}, not a string — pass a list of texts")
        tokenizer = self._tokenizer(max_seq_len)
        ids: list[np.ndarray] = []
        for start in range(0, len(texts), TOKENIZE_CHUNK):
            encodings = tokenizer.encode_batch(list(texts[start : start + TOKENIZE_CHUNK]))
            ids += [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        return ids

    @staticmethod
    def batches(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
        """Indices of ``batch_size`` sequences at a time, longest first (a batch that does not fit in
        memory fails at once, and the time left is never underestimated)."""
        order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]

    def forward(self, sequences: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states [B, S, H], attention mask [B, S]) of token-id sequences, padded to the longest."""
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        ids = np.full((len(sequences), int(lengths.max())), self.pad_id, dtype=np.int64)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = sequence
        mask = torch.from_numpy(np.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
        ids_t = torch.from_numpy(ids).to(self.device)
        mask = mask.to(self.device)
        return self.encoder(ids_t, mask), mask

    @staticmethod
    def pool(hidden: torch.Tensor, mask: torch.Tensor, settings: Settings) -> torch.Tensor:
        """[B, S, H] → [B, H] float32: ``settings.pooling`` over the real tokens, unit length if asked."""
        vectors = pool(hidden.float(), mask, settings.pooling)
        return F.normalize(vectors, dim=-1) if settings.normalize else vectors

    @torch.inference_mode()
    def vectors(
        self,
        sequences: Sequence[np.ndarray],
        settings: Settings,
        batch_size: int = 32,
        progress: bool = False,
    ) -> torch.Tensor:
        """float32 [n, H] on the CPU for token-id sequences, in their order: batches → forward → pool."""
        out = torch.empty(len(sequences), self.dims, dtype=torch.float32)
        if self.kernels is None and self.device.type == "cpu" and len(sequences):
            self._choose_kernels([len(s) for s in sequences], batch_size)
        with Progress(len(sequences), progress) as shown:
            for index in self.batches([len(s) for s in sequences], batch_size):
                hidden, mask = self.forward([sequences[i] for i in index])
                out[torch.from_numpy(index)] = self.pool(hidden, mask, settings).cpu()
                shown.advance(len(index))
        return out

    def _choose_kernels(self, lengths: list[int], batch_size: int) -> None:
        """The kernels training would choose, measured (once per machine and shape, then cached) for a
        forward pass at this job's batch size and median length."""
        seq = max(1, int(np.median(lengths)))
        with torch.inference_mode(False):
            choice, facts = measured_choice(
                self.encoder, min(batch_size, len(lengths)), seq, False, {}, default_cache()
            )
        set_cpu_kernels(self.encoder, **choice)
        self.kernels = {**choice, "how": facts["how"]}

    def _tokenizer(self, max_seq_len: int | None) -> Tokenizer:
        key = max_seq_len or 0
        if key not in self._tokenizers:  # a copy per length: truncation is a setting of the tokenizer object
            self._tokenizers[key] = encoding_copy(self.source.tokenizer, max_seq_len)
        return self._tokenizers[key]


def embed(
    texts: Iterable[str] | str,
    source: str | os.PathLike,
    batch_size: int = 32,
    pooling: str | None = None,
    normalize: bool | None = None,
    max_seq_len: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """``Embedder(source, device).encode(texts, ...)``: float32 [n, hidden] in input order. The source is
    loaded on every call; hold an :class:`Embedder` to embed many times."""
    embedder = Embedder(source, device=device)
    texts = texts if isinstance(texts, str) else list(texts)
    return embedder.encode(texts, batch_size, pooling, normalize, max_seq_len, progress)
