"""Adapting a pre-trained encoder through the real entry point: LoRA runs, cloze prompts, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from encoderlab.adapt.adapters import LoRA
from encoderlab.cli.export import export_run
from encoderlab.cli.predict import predict
from encoderlab.data.classification import TextClassificationDataModule
from encoderlab.data.tokenizer import load_tokenizer
from encoderlab.formats.export import load_encoder
from encoderlab.formats.weights import load_strict
from encoderlab.models.heads import SequenceClassifier
from encoderlab.run.layout import RunDir
from encoderlab.run.rebuild import load_checkpoint_state
from tests.conftest import FAST, cli_env, run_train

VERBALIZER = "prompt.verbalizer={0:bad,1:good}"


@pytest.fixture(scope="module")
def env(data_dir, cache_dir):
    return cli_env(data_dir, cache_dir, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def pretrained(pretrained_run):
    return pretrained_run  # the session's shared tiny pre-training run (read-only)


def finetune(pretrained, run_dir, *extra, fast=FAST):
    return [
        "experiment=finetune_sst2",
        *fast,
        "init=pretrained",
        f"init.path={pretrained / 'encoder'}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


@pytest.mark.slow  # ~10 s; tests/adapt/test_adapters.py checks the merge in the default suite
def test_lora_run_reloads_exactly_and_exports_merged(pretrained, env, tmp_path):
    run_dir = tmp_path / "lora"
    lora = [
        "adapter=lora",
        "adapter.target_modules=[query,value,intermediate]",
        "adapter.merge_on_export=true",
    ]
    result = run_train(finetune(pretrained, run_dir, *lora, "optimizer.lr=1e-2"), env)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 < metrics["params/trainable"] < metrics["params/total"] / 10

    # The small artifact (adapter tensors + head) on top of the base export rebuilds the trained model.
    adapter = load_file(str(run_dir / "adapter/adapter.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())  # training moved B off zero
    encoder = load_encoder(pretrained / "encoder")
    LoRA(target_modules=["query", "value", "intermediate"]).apply(encoder)
    base = {k: v for k, v in encoder.state_dict().items() if "lora_" not in k}
    load_strict(encoder, {**base, **adapter}, source="adapter")
    head = SequenceClassifier(encoder, num_labels=2, dropout=0.0)
    load_strict(head, load_file(str(run_dir / "adapter/head.safetensors")), source="head")
    # The frozen base weights really are the export's: the checkpoint agrees with the artifact route.
    ckpt = load_checkpoint_state(RunDir(run_dir))
    assert all(torch.equal(ckpt[f"encoder.{k}"], v) for k, v in encoder.state_dict().items())

    texts = ["the film was good and funny", "a dull , boring plot", "it is what it is"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    predict(run_dir, str(tmp_path / "in.txt"), str(tmp_path / "out.jsonl"), device="cpu")
    reloaded = [
        json.loads(line)["probabilities"] for line in (tmp_path / "out.jsonl").read_text().splitlines()
    ]
    # Reference: the artifact-route model's own forward pass on the same encoding.
    batch = TextClassificationDataModule.prediction_batch(load_tokenizer(run_dir / "tokenizer"), 32, texts)
    with torch.no_grad():
        hidden = encoder.eval()(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        expected = torch.softmax(head.eval()(hidden, batch["attention_mask"]), -1)
    torch.testing.assert_close(
        torch.tensor([[p["0"], p["1"]] for p in reloaded]), expected, atol=1e-6, rtol=0
    )

    # adapter.merge_on_export: a plain encoder export whose outputs are the adapted encoder's.
    merged = load_encoder(run_dir / "encoder").eval()
    ids = torch.randint(5, merged.config.vocab_size, (2, 12))
    torch.testing.assert_close(merged(ids), encoder(ids), atol=1e-5, rtol=0)
    # encoderlab-export merges too.
    exported = load_encoder(export_run(run_dir, tmp_path / "export", "encoderlab", encoder_only=True)).eval()
    torch.testing.assert_close(exported(ids), encoder(ids), atol=1e-5, rtol=0)


@pytest.mark.slow  # ~8 s; the demo test's probe stage checks a frozen encoder trains less than all
def test_linear_probe_records_the_head_as_trained(pretrained, env, tmp_path):
    result = run_train(finetune(pretrained, tmp_path / "probe", "freeze=encoder"), env)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "probe/metrics.json").read_text())
    head = {k: v for k, v in load_checkpoint_state(tmp_path / "probe").items() if k.startswith("head.")}
    assert metrics["params/trainable"] == sum(v.numel() for v in head.values())


@pytest.mark.slow  # ~18 s: two runs; keeps the default suite under 10 minutes on 2 cores; `make test-all` runs it
def test_cloze_zero_shot_then_few_shot(pretrained, env, tmp_path):
    no_steps = [o for o in FAST if not o.startswith("trainer.max_steps")]
    zero = run_train(
        finetune(pretrained, tmp_path / "zero", "method=zero_shot_cloze", VERBALIZER, fast=no_steps), env
    )
    assert zero.returncode == 0, zero.stderr[-3000:]
    metrics = json.loads((tmp_path / "zero/metrics.json").read_text())
    assert {"test/acc", "val/acc"} <= set(metrics) and metrics["params/trainable"] == 0
    state = load_checkpoint_state(tmp_path / "zero")
    exported = load_file(str(pretrained / "encoder/model.safetensors"))
    assert all(torch.equal(state[f"encoder.{k}"], v) for k, v in exported.items())  # nothing trained
    kept_head = load_file(str(pretrained / "mlm_head.safetensors"))
    assert all(torch.equal(state[f"head.{k}"], v) for k, v in kept_head.items())  # the kept MLM head is used

    few = run_train(
        finetune(pretrained, tmp_path / "few", "method=cloze", VERBALIZER, "optimizer.lr=1e-3"), env
    )
    assert few.returncode == 0, few.stderr[-3000:]
    metrics = json.loads((tmp_path / "few/metrics.json").read_text())
    assert "test/acc" in metrics and metrics["params/trainable"] > 0
    trained = load_checkpoint_state(tmp_path / "few")
    assert not torch.equal(trained["head.dense.weight"], kept_head["dense.weight"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(  # ~9 s, one process for one refusal
            ["method=cloze", "prompt.verbalizer={0:bad,1:xylophonically}"],
            "'xylophonically'",
            marks=pytest.mark.slow,
        ),
        pytest.param(  # ~9 s; tests/adapt/test_adapters.py refuses unmatched modules in the default suite
            ["adapter=lora", "adapter.target_modules=[query,qkv]"],
            "['qkv'] match no linear layer",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_bad_adaptation_input(pretrained, env, tmp_path, extra, message):
    result = run_train(finetune(pretrained, tmp_path / "run", *extra), env)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run/metrics.json").exists()


@pytest.mark.slow  # ~8 s, one process for one refusal
def test_cloze_without_the_kept_mlm_head(pretrained, env, tmp_path):
    shutil.copytree(pretrained / "encoder", tmp_path / "bare/encoder")  # an export with no mlm_head beside it
    result = run_train(finetune(tmp_path / "bare", tmp_path / "run", "method=cloze", VERBALIZER), env)
    assert result.returncode == 2 and "mlm_head.safetensors" in result.stderr
