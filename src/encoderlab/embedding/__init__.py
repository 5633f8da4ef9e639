"""Sentence vectors: one fixed-size vector per text from a trained encoder (docs/embeddings.md).

``Embedder(source).encode(texts)`` or ``encoderlab.embed(texts, source)``; ``save_vectors`` writes them
with the record of how they were made.
"""

from encoderlab.embedding.embedder import Embedder, embed
from encoderlab.embedding.output import save_vectors
from encoderlab.embedding.record import EmbeddingRecord, Settings
from encoderlab.embedding.source import EncoderSource, load_source

__all__ = ["EmbeddingRecord", "Embedder", "EncoderSource", "Settings", "embed", "load_source", "save_vectors"]
