"""The encoder with its pooling as a sentence-transformers model directory: ``SentenceTransformer(path)``.

The directory is the Hugging Face base model (:func:`encoderlab.formats.hf.save_hf`: ``config.json``,
``model.safetensors``, tokenizer files) plus the files that make it a pipeline of modules:

    modules.json                       0: Transformer (this directory), 1: Pooling, 2: Normalize (optional)
    sentence_bert_config.json          max_seq_length, do_lower_case
    1_Pooling/config.json              the pooling: cls, mean, max or last token
    2_Normalize/                       unit-length embeddings (no files: the module has no settings)
    config_sentence_transformers.json  cosine similarity; what wrote it

They are written in the layout that sentence-transformers has read since its 2.x releases (module types
``sentence_transformers.models.*``), so older and current versions load it alike; sentence-transformers
itself is not needed to write it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import encoderlab
from encoderlab.files import atomic_directory
from encoderlab.formats import hf
from encoderlab.models.encoder import Encoder
from encoderlab.models.heads import sentence_pooling
from encoderlab.validate import check, one_of

MODULES_FILE = "modules.json"
SENTENCE_CONFIG_FILE = "sentence_bert_config.json"
MODEL_CONFIG_FILE = "config_sentence_transformers.json"
POOLING_DIR = "1_Pooling"
NORMALIZE_DIR = "2_Normalize"
MODULE_TYPE = "sentence_transformers.models."
# encoderlab's pooling (models.heads.pool) → the Pooling module's switch for the same computation.
POOLING_MODES = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "max": "pooling_mode_max_tokens",
    "last": "pooling_mode_lasttoken",
}
# The switches every sentence-transformers release knows; the last-token one came later (2.3) and is
# written only when it is the pooling, so that older releases still read the other poolings.
CLASSIC_MODES = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens")


def head_pooling(settings: dict, encoder) -> tuple[str, bool]:
    """(pooling, normalize) a head's ``settings()`` name; where it names none (an MLM head) the
    sentence-vector default of :func:`encoderlab.models.heads.sentence_pooling`, not normalised — the
    vectors ``encoderlab-embed`` gives for the same run."""
    return settings.get("pooling") or sentence_pooling(encoder), bool(settings.get("normalize", False))


def pooling_config(pooling: str, width: int) -> dict:
    modes = dict.fromkeys(CLASSIC_MODES, False)
    modes[POOLING_MODES[pooling]] = True
    return {"word_embedding_dimension": width, **modes, "pooling_mode_mean_sqrt_len_tokens": False}


def _module(index: int, kind: str, path: str) -> dict:
    return {"idx": index, "name": str(index), "path": path, "type": MODULE_TYPE + kind}


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def export_sentence_transformers(
    encoder: Encoder,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    pooling: str = "mean",
    normalize: bool = False,
    max_seq_len: int | None = None,
) -> Path:
    """Write ``encoder`` + ``pooling`` (+ unit length with ``normalize``) to ``out_dir``, atomically.

    ``max_seq_len`` (default: the encoder's positions) is where sentence-transformers truncates the
    input, as training did. An encoder that has no Hugging Face equivalent is refused by ``save_hf``.
    """
    check("--pooling", pooling, one_of(*POOLING_MODES))
    positions = encoder.config.max_sequence_length
    max_seq_len = positions if max_seq_len is None else min(int(max_seq_len), positions)
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        hf.save_hf(tmp, encoder, tokenizer_dir)
        modules = [_module(0, "Transformer", ""), _module(1, "Pooling", POOLING_DIR)]
        (tmp / POOLING_DIR).mkdir()
        _write_json(tmp / POOLING_DIR / hf.CONFIG_FILE, pooling_config(pooling, encoder.config.hidden))
        if normalize:
            modules.append(_module(2, "Normalize", NORMALIZE_DIR))
            (tmp / NORMALIZE_DIR).mkdir()
        _write_json(tmp / MODULES_FILE, modules)
        # The tokenizer lowercases by itself where it was trained to (its normalizer): never twice.
        _write_json(tmp / SENTENCE_CONFIG_FILE, {"max_seq_length": max_seq_len, "do_lower_case": False})
        _write_json(
            tmp / MODEL_CONFIG_FILE,
            {
                "__version__": {"encoderlab": encoderlab.__version__, "pytorch": torch.__version__},
                "prompts": {},
                "default_prompt_name": None,
                "similarity_fn_name": "cosine",
            },
        )
    return out_dir
