"""Every new pre-training objective through the real entry point: ELECTRA and causal LM train, leave their
files, resume, pass the doctor, fine-tune and predict; span masking runs under a token budget; whole-word
masking trains the modern block, which exports to ModernBERT. All commands run two at a time from one
interpreter (tests/cli_batch.py)."""

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
            "modern_wwm": {
                "argv": [*PRETRAIN, "objective=wwm", "encoder=modern_tiny", f"hydra.run.dir={tmp}/modern"]
            },
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
            "modern_export": {
                "module": "encoderlab.cli.export",
                "argv": [f"{tmp}/modern", f"{tmp}/modern_hf", "--format", "hf"],
            },
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


def test_a_causal_fine_tune_predicts(runs, tmp_path):
    from encoderlab.cli.predict import main as predict

    texts = tmp_path / "in.txt"
    texts.write_text("a fine film\nbleak and dull\n")
    out = tmp_path / "out.jsonl"
    assert predict([str(runs / "clm_finetune"), "--input", str(texts), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["a fine film", "bleak and dull"]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)


def test_the_modern_block_pretrains_with_whole_word_masking_and_exports_to_modernbert(runs):
    transformers = pytest.importorskip("transformers")
    config = json.loads((runs / "modern_hf/config.json").read_text())
    assert config["model_type"] == "modernbert" and config["architectures"] == ["ModernBertForMaskedLM"]
    model = transformers.AutoModelForMaskedLM.from_pretrained(runs / "modern_hf", attn_implementation="sdpa")
    assert type(model).__name__ == "ModernBertForMaskedLM"
    assert metrics(runs / "modern")["val/loss"] > 0
