"""Where the encoder's weights come from: the ``init/`` config group.

``FromScratch`` builds a freshly initialised encoder of the configured preset; ``FromExport`` rebuilds the
encoder saved by a pre-training run (its own shape and tokenizer; the ``encoder/`` preset is not used).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from encoderlab.errors import UserError
from encoderlab.formats.export import load_encoder, read_export_config
from encoderlab.models.encoder import Encoder


class FromScratch:
    tokenizer_dir: str | None = None

    def build_encoder(self, encoder_factory: Callable[..., Encoder], vocab_size: int) -> Encoder:
        return encoder_factory(vocab_size=vocab_size)


class FromExport:
    """``dropout`` / ``attention_dropout``: the rates for this run, or None to keep the export's. A recipe
    often pre-trains without dropout (a small encoder underfits its corpus) and fine-tunes with it."""

    def __init__(
        self, path: str, dropout: float | None = None, attention_dropout: float | None = None
    ) -> None:
        # Validate now, before any data work, so a wrong path fails in a second.
        self.config = read_export_config(path)
        self.path = Path(path)
        self.tokenizer_dir = str(self.path)
        self.overrides = {}
        for name, rate in (("dropout", dropout), ("attention_dropout", attention_dropout)):
            if rate is None:
                continue
            if not 0.0 <= rate < 1.0:
                raise UserError(f"init.{name}={rate} must be in [0, 1) — or null to keep the export's")
            self.overrides[name] = float(rate)

    def build_encoder(self, encoder_factory: Callable[..., Encoder], vocab_size: int) -> Encoder:
        if vocab_size != self.config.vocab_size:
            raise UserError(
                f"tokenizer vocabulary has {vocab_size} tokens but the encoder in {self.path} has "
                f"{self.config.vocab_size} embeddings — use the tokenizer saved with that export"
            )
        return load_encoder(self.path, **self.overrides)
