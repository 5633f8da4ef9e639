"""Bad input through the real CLI: one clear line, non-zero exit, nothing overwritten."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FAST, cli_env, run_train, write_tsv


def assert_clean_failure(result, *needles: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def env(data_dir, cache_dir):
    return cli_env(data_dir, cache_dir, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")


def finetune(tmp_path, *extra):
    return ["experiment=finetune_sst2", *FAST, f"hydra.run.dir={tmp_path / 'run'}", *extra]


def test_missing_data_file(tmp_path, env):
    result = run_train(finetune(tmp_path, f"data.train_file={tmp_path}/nope.tsv", "data.hub=null"), env)
    assert_clean_failure(result, "nope.tsv")


def test_empty_data_file(tmp_path, env):
    (tmp_path / "empty.tsv").write_text("")
    assert_clean_failure(
        run_train(finetune(tmp_path, f"data.train_file={tmp_path}/empty.tsv"), env), "empty.tsv"
    )


def test_missing_column(tmp_path, env):
    assert_clean_failure(run_train(finetune(tmp_path, "data.text_column=sentence"), env), "sentence")


def test_unseen_validation_label(tmp_path, env):
    dev = write_tsv(tmp_path / "dev.tsv", [("a fine film", "0"), ("odd", "7")])
    assert_clean_failure(run_train(finetune(tmp_path, f"data.val_file={dev}"), env), "7")


def test_num_labels_disagrees_with_data(tmp_path, env):
    assert_clean_failure(run_train(finetune(tmp_path, "data.num_labels=5"), env), "5", "2")


def test_init_path_missing(tmp_path, env):
    line = assert_clean_failure(
        run_train(finetune(tmp_path, "init=pretrained", f"init.path={tmp_path}/x"), env)
    )
    assert "does not exist" in line


def test_init_path_not_an_export(tmp_path, env):
    line = assert_clean_failure(
        run_train(finetune(tmp_path, "init=pretrained", f"init.path={tmp_path}"), env)
    )
    assert "not an encoder export" in line


def test_unknown_group_option(tmp_path, env):
    result = run_train(finetune(tmp_path, "encoder=gigantic"), env)
    assert result.returncode != 0 and "gigantic" in result.stderr


def test_existing_run_directory_is_not_overwritten(tmp_path, env):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"status": "completed"}))
    (run_dir / ".hydra/config.yaml").write_text("seed: 1\n")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert_clean_failure(run_train(finetune(tmp_path), env), "already holds a run")
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.stat().st_size}
    assert after == before


def test_failed_run_is_recorded(tmp_path, env):
    run_train(finetune(tmp_path, "data.text_column=sentence"), env)
    record = json.loads((tmp_path / "run/run.json").read_text())
    assert record["status"] == "failed" and "sentence" in record["error"]
