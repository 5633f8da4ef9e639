"""Tokenizers: train (BERT-style WordPiece), save, load (WordPiece or byte-level BPE), and a content-keyed cache.

Built on the Hugging Face ``tokenizers`` library. Two families of special tokens are understood: BERT's
``[PAD] [UNK] [CLS] [SEP] [MASK]`` (WordPiece, and ModernBERT's byte-level BPE) and RoBERTa's
``<pad> <unk> <s> </s> <mask>``; code asks :func:`special_token_ids` for them by role, never by spelling.
Files written for a WordPiece tokenizer (``tokenizer.json`` and ``vocab.txt``) are readable by
``transformers.BertTokenizer``/``BertTokenizerFast``; a BPE tokenizer is written as ``tokenizer.json``
plus ``vocab.json`` + ``merges.txt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from encoderlab.errors import UserError
from encoderlab.files import atomic_directory

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_SPECIAL_KEYS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
# RoBERTa's spelling of the same five roles (its byte-level BPE vocabularies).
_ROBERTA_SPECIAL_KEYS = {"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>"}
SPECIAL_TOKEN_FAMILIES = (_SPECIAL_KEYS, _ROBERTA_SPECIAL_KEYS)
# Byte-level BPE (GPT-2, RoBERTa, ModernBERT) marks a token that follows a space with "Ġ"; SentencePiece
# vocabularies mark a word start with "▁".
WORD_START_MARKS = ("Ġ", "▁")


def _bert_pipeline(tokenizer: Tokenizer, lowercase: bool) -> Tokenizer:
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _set_post_processor(tokenizer: Tokenizer) -> None:
    ids = special_token_ids(tokenizer)
    names = special_token_names(tokenizer)
    cls, sep = names["cls"], names["sep"]
    if cls == _ROBERTA_SPECIAL_KEYS["cls"]:
        # RoBERTa: <s> A </s></s> B </s>, every token type 0 (it has one token-type embedding).
        tokenizer.post_processor = processors.RobertaProcessing((sep, ids["sep"]), (cls, ids["cls"]))
        return
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, ids["cls"]), (sep, ids["sep"])],
    )


def _finalize(tokenizer: Tokenizer) -> Tokenizer:
    if tokenizer.post_processor is None:
        _set_post_processor(tokenizer)
    # Collators pad per batch and datasets truncate explicitly, so the tokenizer itself does neither.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def train_wordpiece(
    texts: Iterable[str], vocab_size: int, lowercase: bool = True, min_frequency: int = 2
) -> Tokenizer:
    """Train a BERT-style WordPiece tokenizer; the special tokens get ids 0..4 in SPECIAL_TOKENS order."""
    if vocab_size <= len(SPECIAL_TOKENS):
        raise UserError(
            f"vocab_size={vocab_size} is too small — set data.vocab_size above {len(SPECIAL_TOKENS)}"
        )
    tokenizer = _bert_pipeline(
        Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##")), lowercase
    )
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    _set_post_processor(tokenizer)
    return _finalize(tokenizer)


def save_tokenizer(tokenizer: Tokenizer, directory: str | os.PathLike) -> None:
    """Write ``tokenizer.json`` and ``vocab.txt`` (one token per line in id order) into ``directory``;
    a BPE tokenizer gets ``vocab.json`` + ``merges.txt`` instead of ``vocab.txt`` (which would read back as
    WordPiece)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(d / "tokenizer.json"))
    if isinstance(tokenizer.model, models.BPE):
        tokenizer.model.save(str(d))
        return
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ValueError("tokenizer vocabulary ids are not contiguous; cannot write vocab.txt")
    (d / "vocab.txt").write_text("".join(tok + "\n" for tok, _ in by_id), encoding="utf-8")


# What a tokenizer directory holds: tokenizer.json, a WordPiece vocab.txt, or a byte-level BPE's vocab.json
# + merges.txt (any one of the three suffices; the BPE pair only together).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
BPE_FILES = ("vocab.json", "merges.txt")


def has_tokenizer(directory: str | os.PathLike) -> bool:
    d = Path(directory)
    return any((d / n).is_file() for n in TOKENIZER_FILES) or all((d / n).is_file() for n in BPE_FILES)


def tokenizer_files(tokenizer_dir: str | os.PathLike) -> list[Path]:
    """The tokenizer files of a directory (a UserError when it holds none)."""
    d = Path(tokenizer_dir)
    found = [d / n for n in TOKENIZER_FILES if (d / n).is_file()]
    if all((d / n).is_file() for n in BPE_FILES):
        found += [d / n for n in BPE_FILES]
    if not found:
        raise UserError(
            f"no tokenizer files ({', '.join(TOKENIZER_FILES)}, or {' + '.join(BPE_FILES)}) in {tokenizer_dir}"
        )
    return found


def copy_tokenizer(tokenizer_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Copy a tokenizer directory's files into ``out_dir`` (atomically): e.g. into a run, so the run alone
    can turn text into the ids its checkpoint expects."""
    files = tokenizer_files(tokenizer_dir)
    with atomic_directory(out_dir) as tmp:
        for file in files:
            shutil.copyfile(file, tmp / file.name)
    return Path(out_dir)


def load_tokenizer(path: str | os.PathLike, lowercase: bool | None = None) -> Tokenizer:
    """Load from a directory (``tokenizer.json`` preferred, else ``vocab.txt``, else a byte-level BPE's
    ``vocab.json`` + ``merges.txt``) or a ``tokenizer.json`` file.

    ``lowercase`` only matters for a bare ``vocab.txt``, which does not record it; default True (uncased).
    """
    p = Path(path)
    if p.is_file() and p.suffix == ".json":
        tokenizer = _from_json(p)
    elif p.is_file() and p.name.endswith(".txt"):
        tokenizer = _from_vocab(p, lowercase)
    elif (p / "tokenizer.json").is_file():
        tokenizer = _from_json(p / "tokenizer.json")
    elif (p / "vocab.txt").is_file():
        tokenizer = _from_vocab(p / "vocab.txt", lowercase)
    elif all((p / n).is_file() for n in BPE_FILES):
        tokenizer = _from_bpe_files(p / BPE_FILES[0], p / BPE_FILES[1])
    else:
        raise UserError(
            f"tokenizer not found: {p} (need tokenizer.json, vocab.txt, or vocab.json + merges.txt) — set "
            "data.tokenizer to a tokenizer directory, or null to train one"
        )
    special_token_ids(tokenizer)  # fail early, naming the missing token
    return _finalize(tokenizer)


def _from_json(p: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(p))
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise UserError(
            f"cannot read tokenizer file {p} ({e}) — point data.tokenizer at a valid tokenizer.json"
        ) from None


def _from_vocab(p: Path, lowercase: bool | None) -> Tokenizer:
    tokens = [line.rstrip("\r\n") for line in p.read_text(encoding="utf-8").splitlines()]
    vocab = {tok: i for i, tok in enumerate(tokens) if tok}
    if "[UNK]" not in vocab:
        raise UserError(f"vocab file {p} has no [UNK] token — use a BERT WordPiece vocab.txt")
    model = models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##")
    return _bert_pipeline(Tokenizer(model), True if lowercase is None else lowercase)


def _from_bpe_files(vocab: Path, merges: Path) -> Tokenizer:
    """A RoBERTa-style byte-level BPE from ``vocab.json`` + ``merges.txt`` (the files GPT-2 and RoBERTa ship)."""
    try:
        model = models.BPE.from_file(str(vocab), str(merges))
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise UserError(
            f"cannot read the BPE tokenizer files {vocab} + {merges} ({e}) — re-save them with the model"
        ) from None
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # The special tokens are entries of vocab.json; registering them keeps "<mask>" in a text one token.
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    tokenizer.add_special_tokens(
        [t for family in SPECIAL_TOKEN_FAMILIES for t in family.values() if t in vocab]
    )
    return tokenizer


def special_token_names(tokenizer: Tokenizer) -> dict[str, str]:
    """The spelling of the five special tokens, keyed ``pad, unk, cls, sep, mask``: BERT's ``[PAD] [UNK]
    [CLS] [SEP] [MASK]`` or RoBERTa's ``<pad> <unk> <s> </s> <mask>`` (whichever set the vocabulary has)."""
    for family in SPECIAL_TOKEN_FAMILIES:
        if all(tokenizer.token_to_id(token) is not None for token in family.values()):
            return dict(family)
    bert, roberta = (
        [t for t in f.values() if tokenizer.token_to_id(t) is None] for f in SPECIAL_TOKEN_FAMILIES
    )
    raise UserError(
        f"tokenizer has no {' '.join(bert)} token (nor RoBERTa's {' '.join(roberta)}) — use a BERT-style "
        "WordPiece tokenizer ([PAD] [UNK] [CLS] [SEP] [MASK]) or a RoBERTa-style byte-level BPE "
        "(<pad> <unk> <s> </s> <mask>)"
    )


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """Ids of the five special tokens, keyed ``pad, unk, cls, sep, mask`` (RoBERTa's ``<s>`` is ``cls``,
    ``</s>`` is ``sep``)."""
    return {key: tokenizer.token_to_id(token) for key, token in special_token_names(tokenizer).items()}


def word_start_ids(tokenizer: Tokenizer) -> torch.BoolTensor:
    """[vocab] booleans: True where a token id starts a word (whole-word masking groups a True id with the
    False ids after it).

    WordPiece: every token not starting with its continuing-subword prefix (``##``). Byte-level BPE (RoBERTa,
    ModernBERT, GPT-2) and SentencePiece: the tokens starting with ``Ġ`` / ``▁`` (they follow a space). Special
    and added tokens always start a word. (A byte-level BPE text's very first word has no ``Ġ`` and so counts as
    continuing the ``<s>`` / ``[CLS]`` before it, which whole-word masking never masks.)
    """
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    starts = torch.zeros(size, dtype=torch.bool)
    model = tokenizer.model
    prefix = getattr(model, "continuing_subword_prefix", None) or None
    if isinstance(model, models.WordPiece) or prefix:
        prefix = prefix or "##"
        for token, i in tokenizer.get_vocab(with_added_tokens=False).items():
            starts[i] = not token.startswith(prefix)
    else:
        for token, i in tokenizer.get_vocab(with_added_tokens=False).items():
            starts[i] = token.startswith(WORD_START_MARKS)
    for i in tokenizer.get_added_tokens_decoder():
        starts[i] = True
    return starts


def encoding_copy(tokenizer: Tokenizer, max_length: int | None) -> Tokenizer:
    """A copy of ``tokenizer`` that never pads and truncates to ``max_length`` (None: never).

    Encoding settings live on the tokenizer object, so a copy keeps them from leaking to the caller.
    """
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_padding()
    if max_length is None:
        copy.no_truncation()
    else:
        copy.enable_truncation(max_length)
    return copy


def resolve_tokenizer(
    path: str | None,
    training_texts: Callable[[], Iterable[str]],
    vocab_size: int,
    lowercase: bool,
    cache_dir: str,
    fingerprint: str,
) -> tuple[Tokenizer, str]:
    """Load ``path`` if given, else reuse or train a tokenizer cached under ``cache_dir/tokenizers/<key>``.

    The key hashes the training data fingerprint and the settings, so the same data and settings
    always reuse the same tokenizer (and therefore the same token-id caches).
    """
    if path is not None:
        return load_tokenizer(path, lowercase=lowercase), str(path)
    key_src = json.dumps({"fingerprint": fingerprint, "vocab_size": vocab_size, "lowercase": lowercase})
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    final = Path(cache_dir) / "tokenizers" / key
    if (final / "tokenizer.json").is_file():
        return load_tokenizer(final), str(final)
    tokenizer = train_wordpiece(training_texts(), vocab_size=vocab_size, lowercase=lowercase)
    with atomic_directory(final, replace=False) as tmp:
        save_tokenizer(tokenizer, tmp)
    return load_tokenizer(final), str(final)
