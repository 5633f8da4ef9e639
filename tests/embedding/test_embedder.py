"""``Embedder``: vectors equal the encoder's own forward pass one text at a time (so length-sorted, padded
batches change nothing and rows keep input order), each pooling, the defaults each kind of source brings,
and the one-line errors."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import encoderlab
from encoderlab.data import load_tokenizer
from encoderlab.data.tokenizer import copy_tokenizer
from encoderlab.embedding import Embedder, convention
from encoderlab.embedding.convention import POOLINGS
from encoderlab.embedding.progress import Progress
from encoderlab.errors import UserError
from encoderlab.formats.export import export_encoder, load_encoder
from encoderlab.models.heads import SequenceClassifier
from encoderlab.run.layout import RunDir
from encoderlab.run.task_record import FORMAT, FORMAT_VERSION, class_path
from encoderlab.tasks.classification import SequenceClassificationTask
from tests.embedding.conftest import MAX_POSITIONS, tiny_encoder

TEXTS = [
    "the film was great and the cast was wonderful",
    "bleak",
    "a dull , boring plot with actors and music and a script that was never funny",
    "it is",
    "this movie " * 30,  # longer than max_seq_len below: truncated
    "Ünïcode — and CAPITALS too",
    "",
]
MAX_LEN = 16


def reference(export, texts, pooling: str, max_len: int) -> np.ndarray:
    """Each text alone through the encoder, no padding at all, pooled by hand."""
    encoder = load_encoder(export).eval()
    tokenizer = load_tokenizer(export)
    tokenizer.enable_truncation(max_len)
    rows = []
    with torch.no_grad():
        for text in texts:
            hidden = encoder(torch.tensor([tokenizer.encode(text).ids]))[0]  # S,H
            rows.append(
                {"cls": hidden[0], "last": hidden[-1], "mean": hidden.mean(0), "max": hidden.amax(0)}[pooling]
            )
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("pooling", POOLINGS)
def test_batched_vectors_equal_each_text_alone_in_input_order(tiny_export, pooling):
    embedder = Embedder(tiny_export)
    lengths = [len(ids) for ids in embedder.tokenize(TEXTS, MAX_LEN)]
    assert len(set(lengths)) > 3 and max(lengths) == MAX_LEN  # batches of 3 really are padded, one truncated
    got = embedder.encode(TEXTS, batch_size=3, pooling=pooling, max_seq_len=MAX_LEN)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(got, reference(tiny_export, TEXTS, pooling, MAX_LEN), atol=1e-5)
    assert not np.allclose(got[0], got[1])


def test_normalize_scales_to_unit_length(tiny_export):
    embedder = Embedder(tiny_export)
    plain = embedder.encode(TEXTS[:3], pooling="mean")
    unit = embedder.encode(TEXTS[:3], pooling="mean", normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(unit, plain / np.linalg.norm(plain, axis=1, keepdims=True), atol=1e-6)


def test_defaults_follow_the_source(tiny_export, embed_tokenizer_dir, tmp_path):
    assert Embedder(tiny_export).settings() == encoderlab.embedding.Settings("mean", False, MAX_POSITIONS)
    causal = export_encoder(
        tiny_encoder(embed_tokenizer_dir, attention="causal"), embed_tokenizer_dir, tmp_path / "c"
    )
    embedder = Embedder(causal)
    assert embedder.settings().pooling == "last"  # its only position that has seen the whole text
    np.testing.assert_allclose(
        embedder.encode(TEXTS, batch_size=4, max_seq_len=MAX_LEN),
        reference(causal, TEXTS, "last", MAX_LEN),
        atol=1e-5,
    )


def fine_tuned_run(root, tokenizer_dir):
    """A fine-tuned classifier run as training leaves it (task.json, last.ckpt, tokenizer/), written directly:
    its encoder differs from any export, and its head pools by mean."""
    run = RunDir(root / "run")
    run.checkpoints.mkdir(parents=True)
    run.record.write_text(json.dumps({"status": "completed"}))
    encoder = tiny_encoder(tokenizer_dir, seed=7)
    task = SequenceClassificationTask(encoder, SequenceClassifier(encoder, num_labels=2, pooling="mean"))
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": {"class": class_path(task), "kind": task.kind, "settings": task.settings()},
        "head": {"class": class_path(task.head), "settings": task.head.settings()},
        "encoder": encoder.config.to_dict(),
        "adapter": None,
        "data": {
            "class": "encoderlab.data.classification.TextClassificationDataModule",
            "max_seq_len": MAX_LEN,
        },
    }
    run.task.write_text(json.dumps(record))
    torch.save({"state_dict": task.state_dict()}, run.last_checkpoint)
    copy_tokenizer(tokenizer_dir, run.tokenizer)
    return run, encoder


def test_a_fine_tuned_run_embeds_with_its_checkpoint_and_its_heads_pooling(embed_tokenizer_dir, tmp_path):
    run, encoder = fine_tuned_run(tmp_path, embed_tokenizer_dir)
    embedder = Embedder(run.path)
    assert embedder.source.kind == "finetuned"
    assert embedder.settings() == encoderlab.embedding.Settings("mean", False, MAX_LEN)  # the run's own
    export = export_encoder(encoder, embed_tokenizer_dir, tmp_path / "same-weights")
    np.testing.assert_allclose(embedder.encode(TEXTS), reference(export, TEXTS, "mean", MAX_LEN), atol=1e-5)


def test_a_pre_training_run_uses_its_encoder_export_and_its_sequence_length(pretrained_run):
    embedder = Embedder(pretrained_run)
    assert embedder.source.kind == "run"
    assert embedder.settings().max_seq_len == 32  # data.max_seq_len of the FAST runs, not the 512 positions
    np.testing.assert_allclose(
        embedder.encode(TEXTS),
        Embedder(RunDir(pretrained_run).encoder).encode(TEXTS, max_seq_len=32),
        atol=1e-6,
    )


def test_a_run_whose_head_pooled_embeds_as_that_head(tiny_export, tmp_path):
    """A contrastive run leaves an encoder export and records its pooling head: the vectors it trained."""
    run = RunDir(tmp_path / "contrastive")
    shutil.copytree(tiny_export, run.encoder)
    run.record.write_text(json.dumps({"status": "completed"}))
    head = {
        "class": "encoderlab.models.heads.PoolingHead",
        "settings": {"pooling": "mean", "normalize": True},
    }
    run.task.write_text(
        json.dumps(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "task": {},
                "head": head,
                "encoder": {},
                "data": {"max_seq_len": MAX_LEN},
            }
        )
    )
    embedder = Embedder(run.path)
    assert embedder.source.kind == "run"
    assert embedder.settings() == encoderlab.embedding.Settings("mean", True, MAX_LEN)


def test_sentence_transformers_directories_bring_their_pooling(tmp_path):
    def directory(name, modules, pooling_config):
        path = tmp_path / name
        (path / "1_Pooling").mkdir(parents=True)
        (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
        (path / "modules.json").write_text(
            json.dumps(
                [
                    {"idx": i, "path": p, "type": f"sentence_transformers.models.{t}"}
                    for i, (t, p) in enumerate(modules)
                ]
            )
        )
        (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
        return path

    base = [("Transformer", ""), ("Pooling", "1_Pooling")]
    legacy = {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}
    found = convention.of_sentence_transformers(directory("a", [*base, ("Normalize", "2_Normalize")], legacy))
    assert (found.pooling, found.normalize, found.max_seq_len) == ("mean", True, 128)
    found = convention.of_sentence_transformers(directory("b", base, {"pooling_mode": "lasttoken"}))
    assert (found.pooling, found.normalize) == ("last", False)
    for name, modules, config, why in (
        ("c", base, {"pooling_mode": "weightedmean"}, "pooling weightedmean"),
        ("d", base, {"pooling_mode_mean_sqrt_len_tokens": True}, "pooling mean_sqrt_len_tokens"),
        ("e", [*base, ("Dense", "2_Dense")], legacy, "Dense"),
    ):
        found = convention.of_sentence_transformers(directory(name, modules, config))
        assert found.pooling is None and why in found.refusal and "--pooling" in found.refusal


def test_embed_function_and_a_fast_package_import(tiny_export):
    np.testing.assert_allclose(
        encoderlab.embed(iter(TEXTS), tiny_export, pooling="max"),
        Embedder(tiny_export).encode(TEXTS, pooling="max"),
    )
    assert encoderlab.embed("one text", tiny_export).shape == (1, 32)
    code = "import sys, encoderlab; assert 'torch' not in sys.modules"  # embed and Embedder load on first use
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


@pytest.mark.parametrize(
    ("source", "call", "needle"),
    [
        ("absent", None, "does not exist"),
        ("scratch", None, "is not a trained encoder"),
        ("empty_dir", None, "is not an encoder"),
        (None, lambda e: e.encode(TEXTS, pooling="sum"), "pooling='sum' must be one of cls, mean, max, last"),
        (
            None,
            lambda e: e.encode(TEXTS, max_seq_len=1000),
            "max_seq_len=1000 must be an integer from 2 to 64",
        ),
        (None, lambda e: e.encode(TEXTS, batch_size=0), "batch_size=0"),
        (None, lambda e: e.encode(["fine", None]), "texts[1] is NoneType"),
        (None, lambda e: e.encode(TEXTS, normalize="yes"), "normalize='yes'"),
    ],
)
def test_mistakes_are_one_line_user_errors(tiny_export, tmp_path, source, call, needle):
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(UserError) as err:
        embedder = Embedder(
            tiny_export if source is None else (source if source == "scratch" else tmp_path / source)
        )
        call(embedder)
    assert needle in str(err.value) and "\n" not in str(err.value) and " — " in str(err.value)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_plain_lines_without_a_terminal_and_a_bar_on_one():
    plain = io.StringIO()
    with Progress(10, enabled=True, every_seconds=0.0, stream=plain) as shown:
        shown.advance(4)
        shown.advance(6)
    lines = plain.getvalue().splitlines()
    assert lines[0].startswith("embedded 4/10 texts | ") and "ETA" in lines[0]
    assert lines[-1].startswith("embedded 10/10 texts | ") and "ETA" not in lines[-1]
    quiet = io.StringIO()
    with Progress(10, enabled=True, stream=quiet) as shown:  # a short job: no line at all
        shown.advance(10)
    assert quiet.getvalue() == ""
    terminal = Terminal()
    with Progress(10, enabled=True, stream=terminal) as shown:
        shown.advance(10)
    assert "embedded" not in terminal.getvalue()  # rich's bar, not the plain lines
