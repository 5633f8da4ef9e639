"""The sentence-transformers export: ``SentenceTransformer(dir).encode`` gives what the encoder and its pooling
give in encoderlab, for every pooling; ``encoderlab-export --format sentence-transformers`` for any run."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F

from encoderlab.cli.export import main as export_main
from encoderlab.data import load_tokenizer
from encoderlab.data.pairs import TextPairsDataModule
from encoderlab.errors import UserError
from encoderlab.formats.export import load_encoder
from encoderlab.formats.sentence_transformers import export_sentence_transformers
from encoderlab.models.encoder import build
from encoderlab.models.heads import pool

TEXTS = ["the film was great", "a dull , tedious story whose cast never found its footing at all", "ok"]


def tiny_encoder(vocab_size: int, **overrides):
    torch.manual_seed(0)
    encoder = build(vocab_size=vocab_size, layers=2, hidden=32, heads=2, **overrides)
    with torch.no_grad():  # weights far from their init, so that every pooling gives another vector
        for parameter in encoder.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    return encoder.eval()


def encoderlab_vectors(encoder, tokenizer_dir, pooling: str, normalize: bool, max_seq_len: int = 64):
    batch = TextPairsDataModule.prediction_batch(load_tokenizer(tokenizer_dir), max_seq_len, TEXTS)
    with torch.no_grad():
        hidden = encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        vectors = pool(hidden, batch["attention_mask"], pooling)
    return F.normalize(vectors, dim=-1) if normalize else vectors


def sentence_transformers_vectors(directory) -> torch.Tensor:
    sentence_transformers = pytest.importorskip(
        "sentence_transformers", reason="pip install sentence-transformers"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer releases call the classic module names deprecated aliases
        model = sentence_transformers.SentenceTransformer(str(directory), device="cpu")
    return torch.from_numpy(model.encode(TEXTS))


@pytest.mark.parametrize(
    ("pooling", "normalize"), [("cls", True), ("mean", False), ("max", True), ("last", False)]
)
def test_sentence_transformers_encodes_as_the_encoder_and_its_pooling(
    tmp_path, tokenizer_dir, vocab_size, pooling, normalize
):
    encoder = tiny_encoder(vocab_size)
    out = export_sentence_transformers(
        encoder, tokenizer_dir, tmp_path / "st", pooling, normalize, max_seq_len=64
    )
    want = encoderlab_vectors(encoder, tokenizer_dir, pooling, normalize)
    got = sentence_transformers_vectors(out)
    # float32 kernels differ between the two stacks (and between AVX2 and AVX-512 machines); 1e-4 still
    # tells one pooling from another by orders of magnitude
    assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-4), (
        (got - want).abs().max()
    )
    if not normalize:
        assert not torch.allclose(want.norm(dim=-1), torch.ones(len(TEXTS)))  # the case tells them apart


def test_the_directory_names_its_modules_pooling_and_length(tmp_path, tokenizer_dir, vocab_size):
    encoder = tiny_encoder(vocab_size)
    plain = export_sentence_transformers(encoder, tokenizer_dir, tmp_path / "plain", "max", max_seq_len=40)
    modules = json.loads((plain / "modules.json").read_text())
    assert [(m["path"], m["type"].rsplit(".", 1)[-1]) for m in modules] == [
        ("", "Transformer"),
        ("1_Pooling", "Pooling"),
    ]
    pooling = json.loads((plain / "1_Pooling/config.json").read_text())
    assert pooling["word_embedding_dimension"] == 32 and pooling["pooling_mode_max_tokens"] is True
    assert [k for k, v in pooling.items() if v is True] == ["pooling_mode_max_tokens"]
    assert "pooling_mode_lasttoken" not in pooling  # written only where it is the pooling (newer releases)
    assert json.loads((plain / "sentence_bert_config.json").read_text()) == {
        "max_seq_length": 40,
        "do_lower_case": False,
    }
    assert (
        json.loads((plain / "config_sentence_transformers.json").read_text())["similarity_fn_name"]
        == "cosine"
    )
    assert not (plain / "2_Normalize").exists()
    normalized = export_sentence_transformers(encoder, tokenizer_dir, tmp_path / "unit", "last", True, 10_000)
    assert (normalized / "2_Normalize").is_dir()
    assert json.loads((normalized / "1_Pooling/config.json").read_text())["pooling_mode_lasttoken"] is True
    # Never beyond the encoder's positions, whatever the training length said.
    assert json.loads((normalized / "sentence_bert_config.json").read_text())["max_seq_length"] == 512


def test_an_encoder_hugging_face_lacks_is_refused_and_leaves_nothing(tmp_path, tokenizer_dir, vocab_size):
    encoder = tiny_encoder(vocab_size, norm_first=True)
    with pytest.raises(UserError, match="norm_first"):
        export_sentence_transformers(encoder, tokenizer_dir, tmp_path / "st")
    assert list(tmp_path.iterdir()) == []


def test_encoderlab_export_writes_any_run_as_a_sentence_transformers_model(pretrained_run, tmp_path, capsys):
    """A pre-training run has no pooling of its own: mean, no normalising, unless the options say."""
    assert (
        export_main([str(pretrained_run), str(tmp_path / "mean"), "--format", "sentence-transformers"]) == 0
    )
    assert not (tmp_path / "mean/2_Normalize").exists()
    assert json.loads((tmp_path / "mean/1_Pooling/config.json").read_text())["pooling_mode_mean_tokens"]
    args = [
        str(pretrained_run),
        str(tmp_path / "cls"),
        "--format",
        "sentence-transformers",
        "--pooling",
        "cls",
    ]
    assert export_main([*args, "--normalize"]) == 0
    encoder = load_encoder(pretrained_run / "encoder").eval()
    want = encoderlab_vectors(encoder, pretrained_run / "encoder", "cls", True, max_seq_len=32)
    got = sentence_transformers_vectors(tmp_path / "cls")
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), (got - want).abs().max()
    assert "wrote" in capsys.readouterr().out
