"""Data layer: tokenizer, readers, token-id cache, datasets, collators and datamodules."""

from encoderlab.data.collators import MLMCollator, PaddingCollator
from encoderlab.data.datamodules import TextClassificationDataModule, TextCorpusDataModule
from encoderlab.data.tokenizer import load_tokenizer, save_tokenizer, special_token_ids

__all__ = [
    "MLMCollator",
    "PaddingCollator",
    "TextClassificationDataModule",
    "TextCorpusDataModule",
    "load_tokenizer",
    "save_tokenizer",
    "special_token_ids",
]
