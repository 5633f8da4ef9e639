"""``encoderlab-compare`` shows the values a run used, not configured values that did not take effect.

A fine-tune from an encoder export trains with the export's tokenizer whatever ``data.vocab_size`` and
``data.tokenizer`` say: the data module records the tokenizer it ended up with in ``task.json``, and the
table prefers that record. Runs written before the record existed still compare.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from encoderlab.adapt.init import FromExport
from encoderlab.data.classification import TextClassificationDataModule
from encoderlab.reporting.table import build_table, build_tables
from encoderlab.run.read import find_runs, load_run
from tests.conftest import FAST, cli_env, run_train, write_tsv

CONFIGURED_VOCAB = "8192"  # conf/data/text_classification.yaml: what the fine-tune's config says


@pytest.fixture(scope="module")
def finetuned(pretrained_run, data_dir, cache_dir, tmp_path_factory) -> Path:
    """A fine-tune of the session's tiny pre-training run that leaves data.vocab_size as configured."""
    run_dir = tmp_path_factory.mktemp("compare_effective") / "finetune"
    fast = [o for o in FAST if not o.startswith("data.vocab_size=")]
    args = [
        "experiment=finetune_sst2",
        *fast,
        "trainer.max_steps=2",
        "test=false",
        "init=pretrained",
        f"init.path={pretrained_run / 'encoder'}",
        f"hydra.run.dir={run_dir}",
    ]
    result = run_train(args, cli_env(data_dir, cache_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def export_vocab(pretrained_run: Path) -> int:
    return json.loads((pretrained_run / "encoder" / "encoder.json").read_text())["config"]["vocab_size"]


def test_the_data_module_records_the_tokenizer_it_ended_up_with(tmp_path):
    rows = [(f"a {w} film number {i}", str(i % 2)) for i, w in enumerate(["good", "bad", "dull", "fine"] * 5)]
    train = write_tsv(tmp_path / "train.tsv", rows)
    trained = TextClassificationDataModule(
        train_file=str(train), vocab_size=120, cache_dir=str(tmp_path / "c")
    )
    trained.prepare()
    given = TextClassificationDataModule(
        train_file=str(train), tokenizer=trained.tokenizer_dir, vocab_size=8192, cache_dir=str(tmp_path / "c")
    )
    given.prepare()
    described = given.describe()
    assert described["tokenizer"] == trained.tokenizer_dir
    assert described["vocab_size"] == trained.tokenizer.get_vocab_size() < 8192
    assert trained.describe()["vocab_size"] == trained.tokenizer.get_vocab_size()


def test_a_fine_tune_shows_the_exports_vocabulary_not_the_configured_one(pretrained_run, finetuned):
    vocab = export_vocab(pretrained_run)
    assert str(vocab) != CONFIGURED_VOCAB
    pretrain, finetune = find_runs([pretrained_run, finetuned])
    assert finetune.param("data.vocab_size") == CONFIGURED_VOCAB  # what the config says ...
    assert finetune.effective("data.vocab_size") == str(vocab)  # ... and what the run used
    assert Path(finetune.effective("data.tokenizer")) == pretrained_run / "encoder"
    assert finetune.effective("init.path") == str(pretrained_run / "encoder")

    # Pre-training overrode data.vocab_size and the fine-tune did not: configured, they differ; in effect
    # both used the export's vocabulary, so it is no difference (even forced into one table).
    mixed = build_table([pretrain, finetune])
    assert "data.vocab_size" not in mixed.param_keys and "data.vocab_size" in mixed.same_in_effect
    # In the comparison the two tasks are tables of their own, the fine-tune's init.path named by run.
    tables = build_tables([pretrain, finetune])
    assert [t.task for t in tables] == ["pretrain", "classify"]
    assert tables[1].text(finetune.effective("init.path")) == f"{pretrain.name}/encoder"


def test_runs_without_the_record_still_compare(pretrained_run, finetuned, tmp_path):
    vocab = export_vocab(pretrained_run)
    older = tmp_path / "older"  # task.json written before the data module recorded its tokenizer
    shutil.copytree(finetuned, older, ignore=shutil.ignore_patterns("checkpoints"))
    record = json.loads((older / "task.json").read_text())
    for key in ("tokenizer", "vocab_size"):
        record["data"].pop(key)
    (older / "task.json").write_text(json.dumps(record))
    run = load_run(older)
    assert run.effective("data.vocab_size") == str(vocab)  # the encoder's embeddings say it
    assert run.effective("data.tokenizer") is None  # unknown: the configured value, as before

    oldest = tmp_path / "oldest"  # no task.json at all (a run that failed, or an older version)
    shutil.copytree(older, oldest)
    (oldest / "task.json").unlink()
    run = load_run(oldest)
    assert run.effective("data.vocab_size") == CONFIGURED_VOCAB
    assert run.task_kind == "classify"  # from the task choice
    table = build_table([load_run(pretrained_run), run])  # as before the record: the configured value
    assert "data.vocab_size" in table.param_keys
    assert [row.params["data.vocab_size"] for row in table.rows] == [str(vocab), CONFIGURED_VOCAB]


def test_interpolated_config_values_show_resolved(tmp_path):
    """A run that did not override data.train_file shows the path its ${paths.data_dir} resolved to."""
    runs = []
    for name, overrides in (("a", ["data.train_file=/elsewhere/train.tsv"]), ("b", [])):
        path = tmp_path / name
        (path / ".hydra").mkdir(parents=True)
        config = {"paths": {"data_dir": "/data"}, "data": {"train_file": "${paths.data_dir}/sst2/train.tsv"}}
        (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        runs.append(load_run(path))
    assert runs[1].param("data.train_file") == "${paths.data_dir}/sst2/train.tsv"  # as saved
    table = build_table(runs)
    assert [row.params["data.train_file"] for row in table.rows] == [
        "/elsewhere/train.tsv",
        "/data/sst2/train.tsv",
    ]


def test_a_relative_init_path_is_recorded_absolute_and_compares_from_anywhere(pretrained_run, monkeypatch):
    """``init.path=runs/x/encoder`` given in one directory names the same run when compared from another."""
    monkeypatch.chdir(pretrained_run.parent)
    init = FromExport(f"{pretrained_run.name}/encoder")
    recorded = init.describe()["path"]
    assert Path(recorded).is_absolute() and Path(recorded) == (pretrained_run / "encoder").resolve()
    monkeypatch.chdir(Path(recorded).anchor)  # the reader works elsewhere
    table = build_tables([load_run(pretrained_run)])[0]
    assert table.text(recorded) == f"{load_run(pretrained_run).name}/encoder"
