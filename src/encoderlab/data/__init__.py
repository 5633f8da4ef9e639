"""Data layer: tokenizer, readers, token-id cache, datasets, collators and one data module per data kind."""

from encoderlab.data.base import LabelMap, Targets
from encoderlab.data.classification import TextClassificationDataModule
from encoderlab.data.collators import MLMCollator, PaddingCollator
from encoderlab.data.corpus import TextCorpusDataModule
from encoderlab.data.tokenizer import load_tokenizer, save_tokenizer, special_token_ids

__all__ = [
    "LabelMap",
    "MLMCollator",
    "PaddingCollator",
    "Targets",
    "TextClassificationDataModule",
    "TextCorpusDataModule",
    "load_tokenizer",
    "save_tokenizer",
    "special_token_ids",
]
