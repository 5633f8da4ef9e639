"""Every new pre-training objective through the real entry point: ELECTRA and causal LM train, leave their
files, resume, pass the doctor and fine-tune; span masking runs under a token budget. All commands run two at
a time from one interpreter (tests/cli_batch.py)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from tests.conftest import FAST, REPO, cli_env

PRETRAIN = ["experiment=pretrain_mlm", *FAST, "callbacks.last_checkpoint.every_n_steps=2"]


def run_batch(cases: dict, tmp: Path, env: dict) -> dict:
    for case in cases.values():
        case.setdefault("cwd", str(tmp))
    (tmp / "cases.json").write_text(json.dumps(cases))
    subprocess.run(
        [
            sys.executable,
            str(REPO / "tests/cli_batch.py"),
            str(tmp / "cases.json"),
            str(tmp / "results.json"),
        ],
        env=env,
        cwd=tmp,
        check=True,
        timeout=600,
    )
    results = json.loads((tmp / "results.json").read_text())
    for name, result in results.items():
        assert result["returncode"] == 0, f"{name}: {result['stderr'][-3000:]}"
    return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir, cache_dir) -> Path:
    tmp = tmp_path_factory.mktemp("objectives")
    env = cli_env(data_dir, cache_dir, OMP_NUM_THREADS="1")
    run_batch(
        {
            "electra": {"argv": [*PRETRAIN, "objective=electra", f"hydra.run.dir={tmp}/electra"]},
            "clm": {"argv": [*PRETRAIN, "objective=clm", f"hydra.run.dir={tmp}/clm"]},
            "span_budget": {
                "argv": [
                    *PRETRAIN,
                    "objective=span",
                    "trainer.max_steps=-1",
                    "trainer.limit_train_batches=1.0",
                    "budget.tokens=1500",  # packed batches of 8 × 32 real tokens: spent in the 6th
                    f"hydra.run.dir={tmp}/span",
                ]
            },
        },
        tmp,
        env,
    )
    run_batch(
        {
            "electra_resumed": {"argv": [f"resume={tmp}/electra", "trainer.max_steps=6"]},
            "clm_finetuned": {
                "argv": [
                    "experiment=finetune_sst2",
                    *FAST,
                    "init=pretrained",
                    f"init.path={tmp}/clm/encoder",
                    f"hydra.run.dir={tmp}/clm_finetune",
                ]
            },
            "electra_doctor": {"module": "encoderlab.cli.doctor", "argv": [f"{tmp}/electra"]},
        },
        tmp,
        env,
    )
    return tmp


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_electra_exports_the_discriminator_keeps_the_generator_and_logs_its_metrics(runs):
    with safe_open(str(runs / "electra/encoder/model.safetensors"), "pt") as exported:
        encoder_keys = set(exported.keys())
    with safe_open(str(runs / "electra/generator/encoder/model.safetensors"), "pt") as kept:
        generator_width = kept.get_tensor("layers.0.attention.query.weight").shape[0]
    with safe_open(str(runs / "electra/encoder/model.safetensors"), "pt") as exported:
        assert exported.get_tensor("layers.0.attention.query.weight").shape[0] == 4 * generator_width
    assert not [k for k in encoder_keys if "generator" in k]
    assert (runs / "electra/generator/mlm_head.safetensors").is_file()
    logged = metrics(runs / "electra")
    for name in ("val/rtd_acc", "val/replaced_f1", "val/mlm_acc", "val/replaced_rate"):
        assert 0.0 <= logged[name] <= 1.0, name
    assert logged["val/loss"] == pytest.approx(logged["val/mlm_loss"] + 50 * logged["val/rtd_loss"], rel=1e-4)


def test_electra_resumes_from_its_checkpoint(runs):
    steps = [
        int(row["step"]) for row in csv.DictReader((runs / "electra/csv/metrics.csv").open()) if row["step"]
    ]
    assert max(steps) >= 5  # the resumed run went on past the first run's 4 steps
    record = json.loads((runs / "electra/run.json").read_text())
    assert record["status"] == "completed"


def test_causal_lm_exports_a_causal_encoder_that_fine_tunes_with_last_pooling(runs):
    config = json.loads((runs / "clm/encoder/encoder.json").read_text())["config"]
    assert config["attention"] == "causal"
    logged = metrics(runs / "clm")
    assert logged["val/perplexity"] == pytest.approx(2.718281828 ** logged["val/loss"], rel=1e-4)
    task = json.loads((runs / "clm_finetune/task.json").read_text())
    assert task["head"]["settings"]["pooling"] == "last"


def test_span_masking_stops_at_its_token_budget(runs):
    logged = metrics(runs / "span")
    assert logged["budget/stopped_by_budget"] == 1.0
    assert logged["budget/steps"] == 6 and logged["budget/tokens"] == 6 * 8 * 32
