"""The shared base: the label map file, the targets each data module declares, what data leaves in a run."""

from __future__ import annotations

import json
import re

import pytest

from encoderlab.data import TextClassificationDataModule, TextCorpusDataModule
from encoderlab.data.base import LabelMap, Targets
from encoderlab.data.cloze import ClozeDataModule
from encoderlab.data.multilabel import MultiLabelClassificationDataModule
from encoderlab.data.tagging import TokenClassificationDataModule
from encoderlab.data.tokenizer import load_tokenizer
from encoderlab.errors import UserError
from encoderlab.run.layout import RunDir


def test_label_map_round_trip(tmp_path):
    labels = LabelMap(["neg", "neutral", "pos"])
    assert labels.names == ["neg", "neutral", "pos"] and len(labels) == 3
    assert labels.to_id == {"neg": 0, "neutral": 1, "pos": 2}
    path = tmp_path / "run" / "label_map.json"
    labels.save(path)
    assert json.loads(path.read_text()) == {
        "label_names": ["neg", "neutral", "pos"],
        "label_to_id": {"neg": 0, "neutral": 1, "pos": 2},
    }
    assert LabelMap.read(path) == labels


def test_label_map_reads_ids_not_file_order(tmp_path):
    path = tmp_path / "label_map.json"
    path.write_text(json.dumps({"label_to_id": {"pos": 1, "neg": 0}}))
    assert LabelMap.read(path).names == ["neg", "pos"]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps(["neg", "pos"]),
        json.dumps({"label_names": ["neg", "pos"]}),
        json.dumps({"label_to_id": {"neg": 0, "pos": 2}}),
        json.dumps({"label_to_id": {"neg": "a", "pos": 1}}),
    ],
    ids=["not-json", "a-list", "no-label_to_id", "gap-in-ids", "non-integer-id"],
)
def test_a_bad_label_map_is_a_user_error_naming_the_file(tmp_path, text):
    path = tmp_path / "label_map.json"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(f"{path} is not a valid label map")):
        LabelMap.read(path)


def test_a_missing_label_map_is_a_user_error_naming_the_file(tmp_path):
    with pytest.raises(UserError, match="absent.json"):
        LabelMap.read(tmp_path / "absent.json")


def test_each_data_module_declares_its_targets():
    assert TextCorpusDataModule.targets is Targets.TOKENS
    assert TextClassificationDataModule().targets is Targets.CLASSES
    assert TextClassificationDataModule(num_labels=1).targets is Targets.SCORES
    assert MultiLabelClassificationDataModule.targets is Targets.LABEL_SETS
    assert TokenClassificationDataModule.targets is Targets.WORD_TAGS
    assert ClozeDataModule.targets is Targets.PROMPTED_CLASSES


def test_modules_without_prediction_batches():
    assert getattr(TextCorpusDataModule, "prediction_batch", None) is None
    assert ClozeDataModule.prediction_batch is None


def test_labelled_data_leaves_its_label_map_and_tokenizer_in_the_run(tmp_path, classification_files):
    dm = TextClassificationDataModule(
        train_file=str(classification_files["train"]), vocab_size=150, cache_dir=str(tmp_path / "cache")
    )
    dm.prepare()
    run = RunDir(tmp_path / "run")
    dm.save_artifacts(run)
    assert LabelMap.read(run.label_map).names == ["neg", "neutral", "pos"]
    assert load_tokenizer(run.tokenizer).to_str() == dm.tokenizer.to_str()


def test_describe_records_what_prediction_needs(tmp_path, classification_files):
    dm = TextClassificationDataModule(train_file=str(classification_files["train"]), max_seq_len=64)
    assert dm.describe() == {
        "targets": "CLASSES",
        "max_seq_len": 64,
        "lowercase": True,
        "text_column": "text",
        "text_pair_column": None,
        "long_documents": "truncate",
    }
    assert TextCorpusDataModule().describe() == {
        "targets": "TOKENS",
        "max_seq_len": 128,
        "lowercase": True,
        "mask_count": "sampled",  # auto, decided: no trainer on a GPU holds it
    }


def test_evaluation_batches_hold_texts_of_similar_length_and_each_text_once(tmp_path, classification_files):
    """Validation and test batches go longest first, so each is padded to about its own texts' length;
    every example comes once, with its own label."""
    dm = TextClassificationDataModule(
        train_file=str(classification_files["train"]),
        val_file=str(classification_files["val"]),
        test_file=str(classification_files["test"]),
        batch_size=4,
        vocab_size=200,
        cache_dir=str(tmp_path / "cache"),
    )
    dm.prepare()
    for dataset, loader in ((dm.val_dataset, dm.val_dataloader()), (dm.test_dataset, dm.test_dataloader())):
        batches = list(loader)
        widths = [b["input_ids"].shape[1] for b in batches]
        assert widths == sorted(widths, reverse=True)
        assert sum(len(b["labels"]) for b in batches) == len(dataset)
        padded = sum(b["input_ids"].numel() for b in batches)
        in_file_order = sum(
            len(chunk) * max(chunk)
            for chunk in (dataset.lengths[i : i + 4] for i in range(0, len(dataset), 4))
        )
        assert padded <= in_file_order
        labels = sorted(int(label) for b in batches for label in b["labels"])
        assert labels == sorted(int(dataset[i]["labels"]) for i in range(len(dataset)))
