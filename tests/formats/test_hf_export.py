"""``encoderlab-export RUN_DIR OUT --format hf``: what it writes loads in transformers and computes our logits."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers

from encoderlab.cli.export import export_run, main
from encoderlab.data import load_tokenizer
from encoderlab.data.classification import TextClassificationDataModule
from encoderlab.data.corpus import TextCorpusDataModule
from encoderlab.data.tokenizer import copy_tokenizer
from encoderlab.formats.export import export_encoder, load_encoder, save_mlm_head
from encoderlab.models.encoder import build
from encoderlab.models.heads import MaskedLMHead, SequenceClassifier
from encoderlab.run.layout import RunDir
from encoderlab.run.task_record import TaskRecord
from encoderlab.tasks.classification import SequenceClassificationTask
from encoderlab.tasks.masked_lm import MaskedLMTask
from tests.formats.interop_helpers import SENTENCES, batch, perturb

TOL = 1e-5
LABELS = ["negative", "neutral", "positive"]


def small_encoder(vocab_size: int, seed: int):
    torch.manual_seed(seed)
    encoder = build(vocab_size=vocab_size, layers=2, hidden=32, heads=4, intermediate=64, max_positions=64)
    perturb(encoder, seed)
    return encoder.eval()


def save_run(run_dir, task, data, tokenizer_dir) -> None:
    """What training leaves for the readers: the checkpoint, the tokenizer copy and task.json."""
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(
        {"epoch": 1, "global_step": 10, "state_dict": task.state_dict()}, run_dir / "checkpoints/last.ckpt"
    )
    copy_tokenizer(tokenizer_dir, run_dir / "tokenizer")
    TaskRecord.write(RunDir(run_dir), task, data)


@pytest.fixture
def pretrain_run(tmp_path, tokenizer_dir, vocab_size):
    """What a pre-training run leaves: encoder/ export, mlm_head.safetensors, checkpoint, task.json."""
    run = tmp_path / "pretrain_run"
    encoder = small_encoder(vocab_size, seed=1)
    head = MaskedLMHead(encoder)
    perturb(head, seed=2)  # also perturbs the tied decoder weight = the word embeddings, identically
    export_encoder(encoder, tokenizer_dir, run / "encoder")
    save_mlm_head(head, run / "mlm_head.safetensors")
    save_run(run, MaskedLMTask(encoder, head), TextCorpusDataModule(max_seq_len=64), run / "encoder")
    shutil.rmtree(run / "tokenizer")  # pre-training runs keep their tokenizer in the encoder export
    return run, encoder.eval(), head.eval()


def make_finetune_run(tmp_path, tokenizer_dir, vocab_size, pooling="cls", hidden_layers=2):
    """A fine-tuning run: the pre-trained encoder/ export, and a checkpoint whose encoder has moved on."""
    run = tmp_path / "finetune_run"
    export_encoder(small_encoder(vocab_size, seed=3), tokenizer_dir, run / "encoder")
    encoder = small_encoder(vocab_size, seed=4)
    head = SequenceClassifier(encoder, num_labels=len(LABELS), pooling=pooling, hidden_layers=hidden_layers)
    perturb(head, seed=5)
    task = SequenceClassificationTask(encoder, head, num_labels=len(LABELS), label_names=LABELS)
    save_run(run, task, TextClassificationDataModule(max_seq_len=64), tokenizer_dir)
    return run, encoder.eval(), head.eval()


def test_pretrain_run_loads_as_masked_lm_and_base_model(pretrain_run, tmp_path, vocab_size):
    run, encoder, head = pretrain_run
    out = tmp_path / "hf"
    assert main([str(run), "--format", "hf", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"]
    inputs = batch(vocab_size, padded=True)
    with torch.no_grad():
        hidden = encoder(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
        ours = head(hidden)
        mlm, info = transformers.AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        mlm.eval()
        assert isinstance(mlm, transformers.BertForMaskedLM)
        assert (mlm(**inputs).logits - ours).abs().max() < TOL
        base = transformers.AutoModel.from_pretrained(out).eval()
        assert (base(**inputs).last_hidden_state - hidden).abs().max() < TOL


def test_tokenizer_ids_match(pretrain_run, tmp_path, tokenizer_dir):
    run, _, _ = pretrain_run
    export_run(run, tmp_path / "hf")
    ours = load_tokenizer(tokenizer_dir)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert config["do_lower_case"] is True
    for sentence in [*SENTENCES, "Encoders READ text; unseen-words too."]:
        assert theirs(sentence)["input_ids"] == ours.encode(sentence).ids
    pair = theirs("the film", "a plot")
    assert pair["token_type_ids"] == ours.encode("the film", "a plot").type_ids


def test_encoder_only_export_is_a_bert_model(pretrain_run, tmp_path, vocab_size):
    run, encoder, _ = pretrain_run
    assert main([str(run), str(tmp_path / "hf"), "--encoder-only"]) == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == ["BertModel"]
    inputs = batch(vocab_size, padded=False)
    model = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        diff = model(**inputs).last_hidden_state - encoder(
            inputs["input_ids"], None, inputs["token_type_ids"]
        )
    assert diff.abs().max() < TOL


def test_classifier_run_loads_as_sequence_classifier(tmp_path, tokenizer_dir, vocab_size):
    run, encoder, head = make_finetune_run(tmp_path, tokenizer_dir, vocab_size)
    out = tmp_path / "hf"
    assert main([str(run), str(out), "--format", "hf"]) == 0
    model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
        out, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    model.eval()
    assert isinstance(model, transformers.BertForSequenceClassification)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert model.config.label2id == {name: i for i, name in enumerate(LABELS)}
    inputs = batch(vocab_size, padded=True)
    with torch.no_grad():
        ours = head(encoder(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]))
        assert (model(**inputs).logits - ours).abs().max() < TOL  # the fine-tuned encoder, not encoder/


def test_classifier_without_hf_equivalent_is_refused(tmp_path, tokenizer_dir, vocab_size, capsys):
    run, _, _ = make_finetune_run(tmp_path, tokenizer_dir, vocab_size, pooling="mean", hidden_layers=1)
    assert main([str(run), str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip()
    assert "head.hidden_layers=2 head.pooling=cls" in err and "\n" not in err
    assert not (tmp_path / "hf").exists()


def test_encoderlab_format_carries_the_fine_tuned_encoder(tmp_path, tokenizer_dir, vocab_size):
    run, encoder, _ = make_finetune_run(tmp_path, tokenizer_dir, vocab_size)
    export_run(run, tmp_path / "ours", fmt="encoderlab")
    loaded = load_encoder(tmp_path / "ours")
    for key, value in encoder.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_existing_out_needs_force(pretrain_run, tmp_path, capsys):
    run, _, _ = pretrain_run
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main([str(run), str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "keep.txt").exists()
    assert main([str(run), str(out), "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()


def test_tokenizer_vocab_mismatch_names_both_numbers(pretrain_run, tmp_path, vocab_size):
    run, _, _ = pretrain_run
    vocab = (run / "encoder" / "vocab.txt").read_text() + "extra1\nextra2\n"
    (run / "encoder" / "vocab.txt").write_text(vocab)
    (run / "encoder" / "tokenizer.json").unlink()
    with pytest.raises(Exception, match=rf"{vocab_size + 2} tokens.*{vocab_size} rows"):
        export_run(run, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_missing_run_dir_is_a_user_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), str(tmp_path / "hf")]) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_real_lightning_checkpoint_is_read_tensors_only(tmp_path, tokenizer_dir, vocab_size):
    """A checkpoint written by Lightning itself (optimizer, scheduler and loop state) loads weights_only."""
    import functools

    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from encoderlab.training.schedules import linear_warmup

    run, _, _ = make_finetune_run(tmp_path, tokenizer_dir, vocab_size)
    encoder = load_encoder(run / "encoder")
    head = SequenceClassifier(encoder, num_labels=len(LABELS), hidden_layers=2)
    task = SequenceClassificationTask(
        encoder,
        head,
        functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.01),
        functools.partial(linear_warmup, warmup_ratio=0.1),
        num_labels=len(LABELS),
        label_names=LABELS,
    )
    rows = [
        {
            "input_ids": torch.randint(5, vocab_size, (8,)),
            "attention_mask": torch.ones(8, dtype=torch.long),
            "labels": torch.tensor(i % 3),
        }
        for i in range(8)
    ]
    trainer = pl.Trainer(
        max_steps=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
        enable_checkpointing=False,
    )
    trainer.fit(task, DataLoader(rows, batch_size=4))
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    export_run(run, tmp_path / "hf", force=False)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    task.eval()
    inputs = batch(vocab_size, padded=True)
    with torch.no_grad():
        assert (model(**inputs).logits - task(inputs)).abs().max() < TOL
