"""A trained model back from its run directory, for ``encoderlab-predict`` and ``encoderlab-export``.

Everything comes from what the run wrote about itself: ``task.json`` (task, head, encoder config, adapter,
data settings), ``checkpoints/last.ckpt`` (read tensors-only: ``torch.load(weights_only=True)``) and the
tokenizer the run used. Nothing is unpickled and no ``_target_`` of the run's config is instantiated (see
:mod:`encoderlab.run.task_record`). Every problem is a :class:`UserError` naming the file and the fix.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from pytorch_lightning import LightningDataModule
from tokenizers import Tokenizer
from torch import nn

from encoderlab.adapt.adapters import LoRA, merge_lora
from encoderlab.data.tokenizer import load_tokenizer
from encoderlab.data.windows import Windows, recorded_windows
from encoderlab.errors import UserError
from encoderlab.formats.hf import check_vocab_size
from encoderlab.formats.weights import load_strict, strip_wrapper_prefixes
from encoderlab.models.encoder import Encoder, EncoderConfig
from encoderlab.run.layout import RunDir
from encoderlab.run.task_record import TaskRecord, import_class
from encoderlab.tasks.base import EncoderTask


def load_checkpoint_state(run_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``state_dict`` of ``checkpoints/last.ckpt``, read tensors-only (no pickled objects)."""
    path = RunDir(run_dir).last_checkpoint
    if not path.is_file():
        raise UserError(f"{path} not found — use a finished training run (it saves {path.name})")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot read {path} as a tensors-only checkpoint ({first}) — re-run training with this "
            "encoderlab version, which saves checkpoints without pickled objects"
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UserError(f"{path} has no state_dict — it is not a Lightning checkpoint of an encoderlab task")
    return strip_wrapper_prefixes(ckpt["state_dict"])


def tokenizer_dir(run: RunDir) -> Path:
    """The tokenizer the run trained with: its own copy, else its encoder export's."""
    for candidate in (run.tokenizer, run.encoder):
        if candidate.is_dir():
            return candidate
    raise UserError(
        f"{run} holds no tokenizer ({run.tokenizer.name}/ or {run.encoder.name}/) — pass a finished training "
        "run of this encoderlab version"
    )


@dataclass
class TrainedModel:
    """A run's task (encoder + head) in eval mode, with the tokenizer and data settings it trained with."""

    run: RunDir
    record: TaskRecord
    task: EncoderTask
    tokenizer: Tokenizer
    data_class: type

    @property
    def max_seq_len(self) -> int:
        positions = self.task.encoder.config.max_sequence_length
        value = self.record.data.get("max_seq_len")
        return min(int(value), positions) if isinstance(value, int) else positions

    @property
    def text_column(self) -> str | None:
        return self.record.data.get("text_column")

    @property
    def text_pair_column(self) -> str | None:
        return self.record.data.get("text_pair_column")

    @property
    def tokenizer_dir(self) -> Path:
        return tokenizer_dir(self.run)

    @cached_property
    def windows(self) -> Windows | None:
        """The windows the run read long documents in (``data.long_documents=window``); None: it truncated."""
        return recorded_windows(self.record.data, self.tokenizer, self.max_seq_len)


def _build(record: TaskRecord, task_class: type[EncoderTask], head_class: type[nn.Module]) -> EncoderTask:
    try:
        encoder = Encoder(EncoderConfig.from_dict(record.encoder))
        if record.adapter is not None:
            LoRA(**record.adapter).apply(encoder)
        head = head_class(encoder, **(record.head.get("settings") or {}))
        return task_class(encoder, head, **(record.task.get("settings") or {}))
    except (TypeError, ValueError) as err:
        raise UserError(f"{record.path} does not rebuild its model ({err}) — re-run training") from None


def rebuild(run_dir: str | Path, merge_adapters: bool = False) -> TrainedModel:
    """The trained task of ``run_dir``, every checkpoint key accounted for.

    A LoRA run's encoder carries its adapters as trained (exact predictions); ``merge_adapters`` folds
    them into the weights instead, giving a plain encoder (exports).
    """
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise UserError(f"run directory not found: {run} — pass a training run's output directory")
    record = TaskRecord.read(run)
    task_class = import_class(record.task.get("class", ""), EncoderTask, record.path)
    head_class = import_class(record.head.get("class", ""), task_class.head_kind, record.path)
    data_class = import_class(record.data.get("class", ""), LightningDataModule, record.path)
    task = _build(record, task_class, head_class)
    load_strict(task, load_checkpoint_state(run), source=f"{run.last_checkpoint}")
    if record.adapter is not None and merge_adapters:
        merge_lora(task.encoder)
    lowercase = record.data.get("lowercase")
    tokenizer = load_tokenizer(
        tokenizer_dir(run), lowercase=lowercase if isinstance(lowercase, bool) else None
    )
    check_vocab_size(
        tokenizer.get_vocab_size(with_added_tokens=True), task.encoder.config.vocab_size, run.last_checkpoint
    )
    return TrainedModel(run=run, record=record, task=task.eval(), tokenizer=tokenizer, data_class=data_class)
