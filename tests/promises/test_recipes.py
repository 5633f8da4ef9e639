"""docs/architecture.md's three recipes, done from outside the package: a pre-training objective, a task
with its own head, and a command (tests/recipes/toy.py), each with its YAML in a config directory of the
test's own (``hydra.searchpath``). Every reader of runs — predict, export, compare, doctor — works on them
without a line of ``encoderlab`` naming them."""

from __future__ import annotations

import json

import pytest

from encoderlab.cli.compare import main as compare_main
from encoderlab.cli.components import build_task
from encoderlab.cli.doctor import main as doctor_main
from encoderlab.cli.errors import find_user_error
from encoderlab.cli.export import main as export_main
from encoderlab.cli.predict import main as predict_main
from encoderlab.formats.export import load_encoder
from tests.cli.test_config import compose_train
from tests.conftest import FAST, cli_env, run_train
from tests.recipes.toy import main as summary_main

CONFIGS = {
    "task/smoothed_mlm.yaml": "_target_: tests.recipes.toy.SmoothedMLMTask\n_partial_: true\nsmoothing: 0.1\n",
    "task/margin_classify.yaml": "_target_: tests.recipes.toy.MarginClassificationTask\n_partial_: true\n",
    "head/max_mean.yaml": "_target_: tests.recipes.toy.MaxMeanHead\n_partial_: true\n",
}


COMPOSABLE_FAST = [o for o in FAST if not o.startswith("~")]


@pytest.fixture(scope="module")
def extra_conf(tmp_path_factory):
    root = tmp_path_factory.mktemp("conf")
    for name, text in CONFIGS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return f"hydra.searchpath=[file://{root}]"


@pytest.fixture(scope="module")
def env(data_dir, cache_dir):
    return cli_env(data_dir, cache_dir)


def train(args, env):
    result = run_train([*args, *FAST], env)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_new_pretraining_objective(extra_conf, env, tmp_path, capsys):
    run = tmp_path / "objective"
    train(["experiment=pretrain_mlm", "task=smoothed_mlm", extra_conf, f"hydra.run.dir={run}"], env)
    record = json.loads((run / "task.json").read_text())
    assert record["task"]["kind"] == "smoothed_mlm" and record["task"]["settings"] == {"smoothing": 0.1}
    assert load_encoder(run / "encoder").config.layers == 2  # the objective's run left the encoder export

    text = tmp_path / "in.txt"
    text.write_text("a good film\n")
    capsys.readouterr()
    assert predict_main([str(run), "-i", str(text), "-o", str(tmp_path / "p.jsonl")]) == 2
    assert "pre-training run predicts masked tokens" in capsys.readouterr().err
    assert export_main([str(run), str(tmp_path / "hf")]) == 0  # an MLM head: BertForMaskedLM
    assert json.loads((tmp_path / "hf/config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    assert compare_main([str(run)]) == 0 and "val/loss" in capsys.readouterr().out
    assert doctor_main([str(run)]) == 0
    assert summary_main([str(run)]) == 0 and "task=smoothed_mlm status=completed" in capsys.readouterr().out


def test_a_new_task_with_its_own_head(extra_conf, env, tmp_path, capsys):
    run = tmp_path / "task"
    train(
        [
            "experiment=finetune_sst2",
            "task=margin_classify",
            "head=max_mean",
            extra_conf,
            f"hydra.run.dir={run}",
        ],
        env,
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert "val/acc" in metrics and metrics["params/trainable"] > 0

    text = tmp_path / "in.txt"
    text.write_text("a good film\nit was dull\n")
    assert predict_main([str(run), "-i", str(text), "-o", str(tmp_path / "p.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["a good film", "it was dull"]
    assert all(r["label"] in {"0", "1"} and r["margin"] >= 0 for r in rows)

    capsys.readouterr()
    assert export_main([str(run), str(tmp_path / "hf")]) == 2  # no Hugging Face head for MaxMeanHead
    assert "MaxMeanHead" in capsys.readouterr().err and not (tmp_path / "hf").exists()
    assert export_main([str(run), str(tmp_path / "enc"), "--format", "encoderlab"]) == 0
    assert load_encoder(tmp_path / "enc").config.hidden == 128
    assert compare_main([str(run)]) == 0 and "val/acc" in capsys.readouterr().out
    assert doctor_main([str(run), "--json"]) == 0
    json.loads(capsys.readouterr().out)  # the findings, as JSON
    assert summary_main([str(run), "--metric", "val/acc"]) == 0
    assert f"task=margin_classify status=completed val/acc={metrics['val/acc']}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("experiment", "head", "needle"),
    [
        ("finetune_sst2", "classifier", "task=margin_classify needs a MaxMeanHead head"),
        ("finetune_stsb", "max_mean", "for this data use task=regress"),
    ],
)
def test_the_new_task_is_checked_against_its_declarations(
    extra_conf, data_dir, cache_dir, experiment, head, needle
):
    """Pairing reads the toy task's declarations: its head and its data's targets, named in one line."""
    cfg = compose_train(
        [f"experiment={experiment}", "task=margin_classify", f"head={head}", extra_conf, *COMPOSABLE_FAST,
         f"paths.data_dir={data_dir}", f"paths.cache_dir={cache_dir}"]
    )  # fmt: skip
    with pytest.raises(Exception) as err:
        build_task(cfg)
    assert needle in str(find_user_error(err.value))


def test_a_new_command_gets_the_shared_errors(tmp_path, capsys):
    assert summary_main([str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not a run directory" in err[0]
