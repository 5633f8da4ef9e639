"""Prompt-based (cloze) classification data: each text wrapped in a template with one ``[MASK]``.

``"{text} It was [MASK]."`` turns a review into a fill-in-the-blank sentence; the masked-LM head then
scores one verbalizer word per label at the ``[MASK]`` position (PET, Schick & Schütze 2021). The template
is applied to token ids, not strings, so truncation only ever shortens the text, never the prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import Dataset

from encoderlab.data.base import Targets
from encoderlab.data.classification import TextClassificationDataModule
from encoderlab.data.collators import PaddingCollator
from encoderlab.data.tokenizer import special_token_ids
from encoderlab.errors import UserError

TEXT = "{text}"
MASK = "[MASK]"


class ClozeTemplate:
    """Token ids around the text: ``[CLS] before text between [MASK] after [SEP]``."""

    def __init__(self, template: str, tokenizer: Tokenizer) -> None:
        if template.count(TEXT) != 1 or template.count(MASK) != 1:
            raise UserError(
                f"prompt template {template!r} must contain {TEXT} and {MASK} exactly once each — "
                f"e.g. prompt.template='{TEXT} It was {MASK}.'"
            )
        if template.index(MASK) < template.index(TEXT):
            raise UserError(f"prompt template {template!r} must put {MASK} after {TEXT}")
        before, rest = template.split(TEXT)
        between, after = rest.split(MASK)
        ids = special_token_ids(tokenizer)

        def encode(piece: str) -> list[int]:
            return tokenizer.encode(piece, add_special_tokens=False).ids if piece.strip() else []

        self.cls_id, self.sep_id, self.mask_id = ids["cls"], ids["sep"], ids["mask"]
        self.before, self.between, self.after = encode(before), encode(between), encode(after)
        self.overhead = 3 + len(self.before) + len(self.between) + len(self.after)  # CLS, MASK, SEP

    def apply(self, text_ids: Sequence[int], max_len: int) -> tuple[list[int], int]:
        """(ids, mask position): the text is cut to fit ``max_len`` with the whole prompt kept."""
        budget = max_len - self.overhead
        if budget < 1:
            raise UserError(
                f"data.max_seq_len={max_len} leaves no room for text beside the prompt "
                f"({self.overhead} tokens) — raise data.max_seq_len"
            )
        head = [self.cls_id, *self.before, *list(text_ids)[:budget], *self.between]
        return [*head, self.mask_id, *self.after, self.sep_id], len(head)


def verbalizer_token_ids(
    verbalizer: Mapping[str, str] | None, label_names: Sequence[str], tokenizer: Tokenizer
) -> list[int]:
    """One vocabulary id per label (in label-id order); every word must be a single known token."""
    example = ", ".join(f"{name}: word" for name in label_names)
    if not verbalizer:
        raise UserError(
            f"cloze classification needs prompt.verbalizer — one word per label, e.g. {{{example}}}"
        )
    words = {str(k): str(v) for k, v in verbalizer.items()}
    missing = [name for name in label_names if name not in words]
    extra = sorted(set(words) - set(label_names))
    if missing or extra:
        raise UserError(
            f"prompt.verbalizer must name each label exactly (labels: {', '.join(label_names)}; "
            f"missing: {', '.join(missing) or '-'}; unknown: {', '.join(extra) or '-'}) — fix prompt.verbalizer"
        )
    unk = special_token_ids(tokenizer)["unk"]
    ids = []
    for name in label_names:
        word = words[name]
        encoded = tokenizer.encode(word, add_special_tokens=False)
        if len(encoded.ids) != 1 or encoded.ids[0] == unk:
            pieces = " ".join(encoded.tokens) or "nothing"
            raise UserError(
                f"verbalizer word {word!r} (label {name}) is not a single token of the tokenizer (it becomes: "
                f"{pieces}) — choose a word that is one vocabulary entry"
            )
        ids.append(encoded.ids[0])
    if len(set(ids)) != len(ids):
        raise UserError(f"prompt.verbalizer maps two labels to the same word ({words}) — use distinct words")
    return ids


class ClozeDataset(Dataset):
    """A LabelledDataset's items re-encoded through the template, with the ``[MASK]`` position."""

    def __init__(self, base, template: ClozeTemplate, max_len: int) -> None:
        self.base = base
        self.template = template
        self.max_len = max_len
        text_lengths = np.asarray(base.lengths) - 2  # without [CLS] and [SEP]
        self.lengths = np.minimum(text_lengths, max_len - template.overhead) + template.overhead

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = self.base[i]
        ids, position = self.template.apply(item["input_ids"][1:-1].tolist(), self.max_len)
        ids = torch.tensor(ids, dtype=torch.long)
        return {
            "input_ids": ids,
            "token_type_ids": torch.zeros_like(ids),
            "labels": item["labels"],
            "mask_position": position,
        }


class ClozeCollator(PaddingCollator):
    def __call__(self, items):
        batch = super().__call__(items)
        batch["mask_positions"] = torch.tensor([it["mask_position"] for it in items], dtype=torch.long)
        return batch


class ClozeDataModule(TextClassificationDataModule):
    """Labelled single texts as cloze prompts; hands the task the verbalizer's token ids."""

    targets = Targets.PROMPTED_CLASSES
    # Predicting needs the prompt and verbalizer, not only the encoded text: no prediction batches here.
    prediction_input = None
    prediction_batch = None

    def __init__(self, *args, template: str = "{text} It was [MASK].", verbalizer=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if kwargs.get("text_pair_column"):
            raise UserError("cloze prompts take single texts — set data.text_pair_column=null")
        if kwargs.get("long_documents", "truncate") != "truncate":
            raise UserError("a cloze prompt reads one window of text — set data.long_documents=truncate")
        self.template_text = template
        self.verbalizer = dict(verbalizer) if verbalizer else None

    def _prepare(self) -> None:
        super()._prepare()
        template = ClozeTemplate(self.template_text, self._tokenizer)
        self.verbalizer_ids = verbalizer_token_ids(self.verbalizer, self._labels.names, self._tokenizer)
        self.train_dataset = ClozeDataset(self.train_dataset, template, self.max_seq_len)
        self.val_dataset = ClozeDataset(self.val_dataset, template, self.max_seq_len)
        if self.test_dataset is not None:
            self.test_dataset = ClozeDataset(self.test_dataset, template, self.max_seq_len)
        self.collator = ClozeCollator(self.pad_id)

    @property
    def head_kwargs(self) -> dict:
        return {}  # the masked-LM head needs only the encoder

    @property
    def task_kwargs(self) -> dict:
        return {**super().task_kwargs, "verbalizer_token_ids": self.verbalizer_ids}
