"""BERT-style WordPiece tokenizer: train, save, load, and a content-keyed on-disk cache.

Built on the Hugging Face ``tokenizers`` library; files written here (``tokenizer.json`` and
``vocab.txt``) are readable by ``transformers.BertTokenizer``/``BertTokenizerFast``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from encoderlab.errors import UserError
from encoderlab.files import atomic_directory

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_SPECIAL_KEYS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}


def _bert_pipeline(tokenizer: Tokenizer, lowercase: bool) -> Tokenizer:
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _set_post_processor(tokenizer: Tokenizer) -> None:
    ids = special_token_ids(tokenizer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["cls"]), ("[SEP]", ids["sep"])],
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
    """Write ``tokenizer.json`` and ``vocab.txt`` (one token per line in id order) into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(d / "tokenizer.json"))
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ValueError("tokenizer vocabulary ids are not contiguous; cannot write vocab.txt")
    (d / "vocab.txt").write_text("".join(tok + "\n" for tok, _ in by_id), encoding="utf-8")


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")  # what a tokenizer directory holds (either suffices)


def tokenizer_files(tokenizer_dir: str | os.PathLike) -> list[Path]:
    """The tokenizer files of a directory (a UserError when it holds none)."""
    found = [Path(tokenizer_dir) / n for n in TOKENIZER_FILES if (Path(tokenizer_dir) / n).is_file()]
    if not found:
        raise UserError(f"no tokenizer files ({', '.join(TOKENIZER_FILES)}) in {tokenizer_dir}")
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
    """Load from a directory (``tokenizer.json`` preferred, else ``vocab.txt``) or a ``tokenizer.json`` file.

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
    else:
        raise UserError(
            f"tokenizer not found: {p} (need tokenizer.json or vocab.txt) — set data.tokenizer to a tokenizer "
            "directory, or null to train one"
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


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """Ids of the five BERT special tokens, keyed ``pad, unk, cls, sep, mask``."""
    out = {}
    for key, token in _SPECIAL_KEYS.items():
        i = tokenizer.token_to_id(token)
        if i is None:
            raise UserError(f"tokenizer has no {token} token — use a BERT-style WordPiece tokenizer")
        out[key] = i
    return out


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
