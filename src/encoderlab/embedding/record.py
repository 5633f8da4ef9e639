"""What a set of vectors is: written beside them (``<output>.json``) so the vectors describe themselves.

Vectors are only comparable with vectors made the same way, so the record holds everything that changes
them: the source, the pooling, normalization, the longest input and the dimension; a reader checks these
before comparing two files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import encoderlab
from encoderlab.files import read_json_object, write_json

FORMAT = "encoderlab-embeddings"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Settings:
    """How texts become vectors: what ``Embedder.encode`` was asked for, defaults resolved."""

    pooling: str  # cls | mean | max | last
    normalize: bool  # unit length
    max_seq_len: int  # longer texts are truncated to this many tokens (special tokens included)


@dataclass(frozen=True)
class EmbeddingRecord:
    source: str  # as given (a path, or minilm)
    source_kind: str  # export | run | finetuned | hf | minilm
    source_path: str
    pooling: str
    normalize: bool
    max_seq_len: int
    dims: int
    count: int  # number of vectors
    dtype: str = "float32"
    ids: str | None = None  # the file holding the row ids (a .npy output given --id-column), beside this one
    # Texts read whole in overlapping windows (window_stride, max_windows, window_pooling; data/windows.py)
    # rather than truncated at max_seq_len; None: truncated.
    windows: dict | None = None

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "encoderlab_version": encoderlab.__version__,
            **asdict(self),
        }

    def write(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: str | Path) -> EmbeddingRecord | None:
        """The record at ``path``, or None when it is missing or not one."""
        data = read_json_object(path)
        if data.get("format") != FORMAT:
            return None
        fields = cls.__dataclass_fields__
        try:
            return cls(**{k: v for k, v in data.items() if k in fields})
        except TypeError:
            return None
