"""The self-describing encoder export: ``model.safetensors`` + ``encoder.json`` + tokenizer files.

Everything needed to rebuild the encoder is in the directory, so fine-tuning needs no part of the
pre-training config. The MLM head is never in it (it is kept beside the run as ``mlm_head.safetensors``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import encoderlab
from encoderlab.data.tokenizer import tokenizer_files
from encoderlab.errors import UserError
from encoderlab.files import atomic_directory, atomic_file, write_json
from encoderlab.formats import hf
from encoderlab.formats.weights import load_strict
from encoderlab.models.encoder import Encoder, EncoderConfig
from encoderlab.models.heads import MaskedLMHead
from encoderlab.run.layout import RunDir

FORMAT = "encoderlab-encoder"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "encoder.json"


def _contiguous_state(module: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; a clone per tensor is cheap at export time.
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def export_encoder(encoder: Encoder, tokenizer_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the encoder alone (no head) to ``out_dir``, atomically: a crash leaves no partial export."""
    out_dir = Path(out_dir)
    tokenizer_dir = Path(tokenizer_dir)
    with atomic_directory(out_dir) as tmp:
        save_file(_contiguous_state(encoder), str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        (tmp / WEIGHTS_FILE).chmod(0o644)  # safetensors creates files readable by the owner only
        write_json(
            tmp / CONFIG_FILE,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "encoderlab_version": encoderlab.__version__,
                "config": encoder.config.to_dict(),
            },
        )
        for file in tokenizer_files(tokenizer_dir):
            shutil.copyfile(file, tmp / file.name)
    return out_dir


def read_export_config(path: str | Path) -> EncoderConfig:
    """Validate that ``path`` is an encoder export and return its config; clear errors otherwise."""
    path = Path(path)
    hint = "point init.path at an encoder export (a pre-training run's encoder/ directory)"
    if not path.exists():
        raise UserError(f"init.path does not exist: {path} — {hint}")
    missing = [n for n in (CONFIG_FILE, WEIGHTS_FILE) if not (path / n).is_file()]
    if missing:
        raise UserError(f"{path} is not an encoder export (missing {', '.join(missing)}) — {hint}")
    try:
        meta = json.loads((path / CONFIG_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, expected {FORMAT!r}")
        return EncoderConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path / CONFIG_FILE} is not a valid encoder config ({err}) — {hint}") from None


def load_encoder(path: str | Path, **config_overrides) -> Encoder:
    """Rebuild the encoder from an export; every tensor must match the config exactly.

    ``config_overrides`` change settings that hold no weights (dropout rates) for the new run.
    """
    path = Path(path)
    encoder = Encoder(dataclasses.replace(read_export_config(path), **config_overrides))
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError) as err:
        raise UserError(
            f"cannot read {path / WEIGHTS_FILE} ({err}) — the file is damaged; export it again"
        ) from None
    load_strict(encoder, state, source=str(path / WEIGHTS_FILE))
    return encoder


def save_mlm_head(head: nn.Module, path: str | Path) -> None:
    """Keep the pre-training head's own tensors (decoder weight excluded: it is the tied embedding)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in head.own_state_dict().items()}
    with atomic_file(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "encoderlab-mlm-head", "tied": "decoder.weight"})


def load_mlm_head(encoder: Encoder, path: str | None = None, export_dir: str | None = None) -> MaskedLMHead:
    """The masked-LM head kept by a pre-training run, tied to ``encoder``'s embeddings.

    ``path`` names the file; by default it is the one beside the encoder export ``export_dir``
    (``<run>/encoder`` → ``<run>/mlm_head.safetensors``), which is where pre-training puts it. When
    ``export_dir`` is a Hugging Face model directory (``init=hf``), its own MLM head is used where it is
    exactly ours (:func:`encoderlab.formats.hf.load_hf_mlm_head`).
    """
    if path is None and export_dir is not None and hf.is_hf_directory(export_dir):
        return hf.load_hf_mlm_head(encoder, export_dir)
    if path is None:
        if export_dir is None:
            raise UserError(
                "the pre-trained MLM head is found beside the encoder export: use init=pretrained "
                "init.path=<pre-training run>/encoder, or name the file with head.path"
            )
        path = RunDir(Path(export_dir).parent).mlm_head
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{path} not found — prompt-based classification needs the MLM head kept by the pre-training run "
            f"(its {path.name}); pre-train with this encoderlab version or set head.path"
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise UserError(f"cannot read {path} ({err}) — the file is damaged; pre-train again") from None
    head = MaskedLMHead(encoder)
    load_strict(head, state, source=str(path), expected_missing=MaskedLMHead.TIED_KEYS)
    return head
