"""Tiny pre-train → export → fine-tune (pre-trained, probe, bottom-k, scratch) through the real entry point."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from encoderlab.adapt.freeze import FreezeEncoder, freeze
from encoderlab.cli.components import build_task
from tests.conftest import CONF_DIR, FAST, cli_env, run_train


@pytest.fixture(scope="module")
def pretrained(pretrained_run):
    return pretrained_run


def test_pretraining_run_directory(pretrained):
    files = {p.name for p in pretrained.iterdir()}
    assert {".hydra", "checkpoints", "metrics.json", "run.json", "encoder", "mlm_head.safetensors"} <= files
    assert (pretrained / "checkpoints/last.ckpt").is_file()
    assert {p.name for p in (pretrained / "encoder").iterdir()} >= {
        "model.safetensors",
        "encoder.json",
        "tokenizer.json",
    }
    metrics = json.loads((pretrained / "metrics.json").read_text())
    assert {"val/loss", "val/acc", "val/perplexity", "params/trainable"} <= set(metrics)
    assert metrics["val/perplexity"] == pytest.approx(
        torch.tensor(metrics["val/loss"]).exp().item(), rel=1e-3
    )
    record = json.loads((pretrained / "run.json").read_text())
    assert record["status"] == "completed" and record["seed"] == 42
    assert {"torch", "pytorch-lightning", "hydra-core"} <= set(record["packages"])
    assert "commit" in record["git"] and record["ended"] >= record["started"]


def test_export_holds_the_encoder_alone(pretrained):
    exported = set(load_file(str(pretrained / "encoder/model.safetensors")))
    head = set(load_file(str(pretrained / "mlm_head.safetensors")))
    assert all(not k.startswith(("head.", "encoder.")) for k in exported)
    assert "embeddings.word_embeddings.weight" in exported
    assert head == {"dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "decoder.bias"}
    assert not exported & head


def compose_finetune(pretrained, data_dir, cache_dir, extra=()):
    overrides = [
        "experiment=finetune_sst2",
        *[o for o in FAST if not o.startswith("~")],
        "init=pretrained",
        f"init.path={pretrained / 'encoder'}",
        f"paths.data_dir={data_dir}",
        f"paths.cache_dir={cache_dir}",
        "paths.output_dir=/tmp/unused",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def test_head_replacement_loads_exact_encoder_and_fresh_head(pretrained, data_dir, cache_dir):
    _, task = build_task(compose_finetune(pretrained, data_dir, cache_dir))
    exported = load_file(str(pretrained / "encoder/model.safetensors"))
    own = task.encoder.state_dict()
    assert set(own) == set(exported)
    for key, value in exported.items():
        assert torch.equal(own[key], value), key
    assert type(task.head).__name__ == "SequenceClassifier"
    assert torch.count_nonzero(task.head.out.bias) == 0 and 0.01 < task.head.out.weight.std() < 0.03
    assert not any(k.startswith("head.dense") or "decoder" in k for k in task.state_dict())


def test_linear_probe_trains_only_the_head(pretrained, data_dir, cache_dir):
    _, task = build_task(compose_finetune(pretrained, data_dir, cache_dir))
    assert freeze(task, FreezeEncoder()) == sum(p.numel() for p in task.head.parameters())


@pytest.mark.parametrize(
    "variant",
    [
        ["init=pretrained"],
        pytest.param(["init=pretrained", "freeze=encoder"], marks=pytest.mark.slow),  # ~7 s each; the
        pytest.param(
            ["init=pretrained", "freeze=bottom_k", "freeze.k=1"], marks=pytest.mark.slow
        ),  # freezing
        # policies themselves are tested in tests/adapt
        pytest.param(["init=scratch"], marks=pytest.mark.slow),  # ~9 s; the demo test fine-tunes from scratch
    ],
    ids=["pretrained", "probe", "bottom_k", "scratch"],
)
def test_finetune_variants_through_the_cli(pretrained, data_dir, cache_dir, tmp_path, variant):
    init = [f"init.path={pretrained / 'encoder'}"] if "init=pretrained" in variant else []
    run_dir = tmp_path / "ft"
    args = ["experiment=finetune_sst2", *FAST, *variant, *init, f"hydra.run.dir={run_dir}"]
    result = run_train(args, cli_env(data_dir, cache_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val/acc", "val/f1_macro", "test/acc", "test/f1_macro"} <= set(metrics)
    assert 0.0 <= metrics["val/acc"] <= 1.0
    assert json.loads((run_dir / "label_map.json").read_text())["label_names"] == ["0", "1"]
    assert (run_dir / "checkpoints/last.ckpt").is_file() and not (run_dir / "encoder").exists()
    if "freeze=encoder" in variant:
        assert metrics["params/trainable"] == 128 * 2 + 2  # the tiny encoder's hidden size × labels + bias
    elif "freeze=bottom_k" in variant:
        assert 0 < metrics["params/trainable"] < metrics["params/total"]
    else:
        assert metrics["params/trainable"] == metrics["params/total"]
    assert "trainable" in result.stdout + result.stderr
