"""How a source turns token states into one vector when the user does not say: its pooling and whether the
vector is scaled to unit length.

The rule, first match wins:

1. A sentence-transformers model directory (``modules.json``) pools as its Pooling module says and
   normalizes when a Normalize module follows (all-MiniLM-L6-v2: mean, normalized); its
   ``sentence_bert_config.json`` gives the longest input (``max_seq_length``).
2. A run whose head pools (a fine-tuned sequence classifier, a contrastive run's pooling head) pools as
   that head did, normalized when the head normalized; its ``data.max_seq_len`` is the longest input.
3. Otherwise the sentence-vector default (:func:`encoderlab.models.heads.sentence_pooling`): the mean over
   the real tokens of a bidirectional encoder, the last real token of a causal one; not normalized. The
   sentence-transformers export (``encoderlab-export --format sentence-transformers``) follows the same
   rule, so its vectors are these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from encoderlab.errors import UserError
from encoderlab.formats import hf
from encoderlab.formats.sentence_transformers import MODULES_FILE, POOLING_MODES, SENTENCE_CONFIG_FILE
from encoderlab.models.encoder import Encoder
from encoderlab.models.heads import SequenceClassifier, sentence_pooling

POOLINGS = SequenceClassifier.POOLINGS  # what models/heads.py `pool` computes

# A Pooling module's settings (``<its dir>/config.json``): one boolean switch per mode (what
# formats/sentence_transformers.py writes and every release reads), or the single ``pooling_mode`` of
# sentence-transformers 5+.
SWITCH_PREFIX = "pooling_mode_"
SWITCHES = {switch: pooling for pooling, switch in POOLING_MODES.items()}
MODE_NAMES = {"cls": "cls", "mean": "mean", "max": "max", "lasttoken": "last"}
NORMALIZE_MODULE = "Normalize"  # the last part of the module's ``type``


@dataclass(frozen=True)
class Convention:
    """The default pooling and normalization of a source and where they come from; ``pooling`` is None when
    the source records one that encoderlab does not reproduce (``refusal`` says why: the user must choose)."""

    pooling: str | None
    normalize: bool
    origin: str  # "sentence-transformers", "fine-tuned head" or "sentence-vector default"
    max_seq_len: int | None = None  # the longest input the source was set up for, when it records one
    refusal: str | None = None


def natural(encoder: Encoder) -> Convention:
    return Convention(sentence_pooling(encoder), False, "sentence-vector default")


def of_head(settings: dict, encoder: Encoder) -> Convention:
    """A fine-tuned run's head settings: its pooling (and normalization) when it pools, else natural."""
    pooling = settings.get("pooling")
    if pooling not in POOLINGS:
        return natural(encoder)
    return Convention(pooling, bool(settings.get("normalize", False)), "fine-tuned head")


def is_sentence_transformers(directory: Path) -> bool:
    return (directory / MODULES_FILE).is_file()


def of_sentence_transformers(directory: Path) -> Convention:
    """The pooling, normalization and longest input a sentence-transformers directory records.

    Its default is kept only when every module after the first (the transformer) is one this package
    reproduces exactly: a Pooling module with one mode encoderlab computes, then optionally Normalize.
    Anything else (a Dense projection, weighted-mean pooling) leaves no default, since vectors without it
    would silently differ from the model's own: the user then chooses the pooling.
    """
    modules = _read_json(directory / MODULES_FILE, directory)
    if not isinstance(modules, list) or not modules or not all(isinstance(m, dict) for m in modules):
        raise UserError(f"{directory / MODULES_FILE} is not a list of modules — save the model again")
    pooling, normalize, problem = None, False, None
    for module in sorted(modules, key=lambda m: m.get("idx", 0))[1:]:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        config = directory / str(module.get("path", "")) / hf.CONFIG_FILE
        if pooling is None and problem is None and config.is_file():
            pooling, problem = _pooling_mode(_read_json(config, directory), config)
        elif kind == NORMALIZE_MODULE and pooling is not None:
            normalize = True
        else:
            problem = problem or f"its module {module.get('type')} is not one encoderlab applies"
    if pooling is None and problem is None:
        problem = f"{MODULES_FILE} lists no pooling module"
    settings = (
        _read_json(directory / SENTENCE_CONFIG_FILE, directory)
        if (directory / SENTENCE_CONFIG_FILE).is_file()
        else {}
    )
    longest = settings.get("max_seq_length") if isinstance(settings, dict) else None
    longest = longest if isinstance(longest, int) and longest > 0 else None
    if problem is not None:
        refusal = (
            f"{directory} is a sentence-transformers model whose vectors encoderlab does not reproduce "
            f"({problem}) — choose the pooling yourself (pooling=cls|mean|max|last, --pooling in "
            "encoderlab-embed) or embed with sentence-transformers"
        )
        return Convention(None, False, "sentence-transformers", longest, refusal)
    return Convention(pooling, normalize, "sentence-transformers", longest)


def _pooling_mode(config, path: Path) -> tuple[str | None, str | None]:
    """(our pooling, None), or (None, why not) for a mode encoderlab does not compute."""
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a JSON object — save the model again")
    mode = config.get("pooling_mode")
    if mode is None:  # the switches
        on = [k for k, v in config.items() if k.startswith(SWITCH_PREFIX) and v is True]
        on = on or [POOLING_MODES["mean"]]  # sentence-transformers' own default
        if len(on) == 1 and on[0] in SWITCHES:
            return SWITCHES[on[0]], None
        return None, "pooling " + "+".join(k.removeprefix(SWITCH_PREFIX) for k in on)
    modes = [mode] if isinstance(mode, str) else list(mode)
    if len(modes) == 1 and modes[0] in MODE_NAMES:
        return MODE_NAMES[modes[0]], None
    return None, "pooling " + "+".join(map(str, modes))


def _read_json(path: Path, directory: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot read {path} ({err}) — {directory} is not a complete model directory"
        ) from None
