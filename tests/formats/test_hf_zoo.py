"""The model zoo beyond BERT: RoBERTa, DistilBERT, ELECTRA and ModernBERT import (hidden states and kept MLM
heads equal transformers'), ModernBERT export, byte-level BPE tokenizers, and one fine-tune of an imported
RoBERTa through ``encoderlab-train``. Every model is a small random one built here; nothing is downloaded."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from encoderlab.adapt.init import FromHuggingFace
from encoderlab.data.tokenizer import (
    load_tokenizer,
    save_tokenizer,
    special_token_ids,
    tokenizer_files,
    word_start_ids,
)
from encoderlab.errors import UserError
from encoderlab.formats import hf, hf_modernbert
from encoderlab.formats.export import load_mlm_head
from encoderlab.formats.hf_family import theirs_keys
from encoderlab.models.encoder import Encoder, EncoderConfig
from encoderlab.models.heads import MaskedLMHead
from encoderlab.run.layout import RunDir
from tests.conftest import FAST, FILLER, NEGATIVE, POSITIVE, cli_env, run_train
from tests.formats.interop_helpers import TEXTS, perturb

TOL = 1e-5
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4
BPE_TEXTS = TEXTS + [" ".join(FILLER + POSITIVE + NEGATIVE)] * 5


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    """A RoBERTa-style byte-level BPE (tokenizer.json + vocab.json + merges.txt), trained here."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=ROBERTA_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(BPE_TEXTS, trainer=trainer)
    directory = tmp_path_factory.mktemp("bpe")
    save_tokenizer(load_tokenizer_from(tokenizer, directory), directory)
    return directory


def load_tokenizer_from(tokenizer: Tokenizer, directory):
    """Through our loader once, so tokenizer.json carries RoBERTa's <s> ... </s> post-processor."""
    save_tokenizer(tokenizer, directory)
    (directory / "tokenizer.json").unlink()
    return load_tokenizer(directory)


def save_model(model, directory, tokenizer_dir):
    model.save_pretrained(directory)
    for file in tokenizer_files(tokenizer_dir):
        (directory / file.name).write_bytes(file.read_bytes())
    return directory


def padded_batch(vocab_size: int, pad_id: int, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (3, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = pad_id
    return {"input_ids": ids, "attention_mask": mask}


def compare(directory, base, model, inputs, with_head: bool) -> None:
    """Our import of ``directory`` against transformers' ``model`` (its base model ``base``), eval mode, at
    real-token positions: hidden states, and MLM logits through our kept head."""
    encoder = hf.load_hf_encoder(directory).eval()
    model.eval()
    real = inputs["attention_mask"].bool()
    with torch.no_grad():
        ours = encoder(inputs["input_ids"], inputs["attention_mask"])
        theirs = base(**inputs).last_hidden_state
        assert (ours - theirs)[real].abs().max().item() < TOL
        if with_head:
            head = load_mlm_head(encoder, export_dir=str(directory)).eval()
            logits = model(**inputs).logits
            assert (head(ours) - logits)[real].abs().max().item() < TOL


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory, bpe_dir):
    vocab = load_tokenizer(bpe_dir).get_vocab_size()
    config = transformers.RobertaConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )
    torch.manual_seed(0)
    model = transformers.RobertaForMaskedLM(config)
    perturb(model)
    return save_model(model, tmp_path_factory.mktemp("roberta"), bpe_dir), model


def test_roberta_matches_transformers(roberta_dir):
    directory, model = roberta_dir
    inputs = padded_batch(model.config.vocab_size, pad_id=1)
    compare(directory, model.roberta, model, inputs, with_head=True)
    config = hf.config_from_hf(directory / "config.json")
    assert (config.position_offset, config.type_vocab_size, config.pad_token_id) == (2, 1, 1)


def test_distilbert_matches_transformers(tmp_path, tokenizer_dir, vocab_size):
    config = transformers.DistilBertConfig(
        vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=40
    )
    torch.manual_seed(0)
    model = transformers.DistilBertForMaskedLM(config)
    perturb(model)
    directory = save_model(model, tmp_path, tokenizer_dir)
    compare(directory, model.distilbert, model, padded_batch(vocab_size, pad_id=0), with_head=True)
    assert hf.config_from_hf(directory / "config.json").type_vocab_size == 0


@pytest.mark.parametrize("generator", [False, True])
def test_electra_matches_transformers(tmp_path, tokenizer_dir, vocab_size, generator):
    config = transformers.ElectraConfig(
        vocab_size=vocab_size,
        embedding_size=16,  # narrower than hidden: embeddings_project is our embeddings.projection
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
    )
    torch.manual_seed(0)
    model = (transformers.ElectraForMaskedLM if generator else transformers.ElectraForPreTraining)(config)
    perturb(model)
    directory = save_model(model, tmp_path, tokenizer_dir)
    compare(directory, model.electra, model, padded_batch(vocab_size, pad_id=0), with_head=generator)
    if not generator:  # the discriminator's head is an extra, not an MLM head
        with pytest.raises(UserError, match="head=mlm"):
            load_mlm_head(hf.load_hf_encoder(directory), export_dir=str(directory))


def small_modernbert_config(vocab_size: int, **overrides):
    values = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
        local_attention=4,  # |i - j| <= 2 in layer 1 (layers 0 and 2 are global), inside a 12-token batch
        global_attn_every_n_layers=2,
        pad_token_id=0,
        cls_token_id=2,
        bos_token_id=2,
        sep_token_id=3,
        eos_token_id=3,
        attn_implementation="sdpa",
    )
    return transformers.ModernBertConfig(**{**values, **overrides})


def test_modernbert_matches_transformers(tmp_path, tokenizer_dir, vocab_size):
    torch.manual_seed(0)
    model = transformers.ModernBertForMaskedLM(small_modernbert_config(vocab_size))
    perturb(model)
    directory = save_model(model, tmp_path, tokenizer_dir)
    compare(directory, model.model, model, padded_batch(vocab_size, pad_id=0), with_head=True)
    config = hf.config_from_hf(directory / "config.json")
    assert (config.local_window, config.global_every, config.rope_theta) == (4, 2, 160_000.0)


def test_name_tables_account_for_every_tensor(vocab_size):
    """Each table covers our encoder's parameters and transformers' base model's, exactly."""
    cases = [
        (transformers.RobertaModel, transformers.RobertaConfig(vocab_size=vocab_size, **SMALL)),
        (
            transformers.DistilBertModel,
            transformers.DistilBertConfig(vocab_size=vocab_size, dim=32, n_heads=4),
        ),
        (
            transformers.ElectraModel,
            transformers.ElectraConfig(vocab_size=vocab_size, embedding_size=16, **SMALL),
        ),
        (transformers.ModernBertModel, small_modernbert_config(vocab_size)),
    ]
    for cls, hf_config in cases:
        cfg = hf_config.to_dict()
        family = hf.family_of(cfg, "test")
        config = family.config_from_hf(cfg, "test")
        table = family.name_map(config)
        assert set(table) == set(Encoder(config).state_dict()), cls
        model = (
            cls(hf_config, add_pooling_layer=False) if cls is transformers.RobertaModel else cls(hf_config)
        )
        assert theirs_keys(table) == set(model.state_dict()) - set(family.extra_keys), cls


SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def modern_encoder(vocab_size: int, **overrides) -> Encoder:
    """A ``modern_tiny``-style encoder with random weights everywhere."""
    values = dict(
        vocab_size=vocab_size,
        layers=3,
        hidden=32,
        heads=4,
        intermediate=48,
        max_positions=64,
        type_vocab_size=0,
        layer_norm_eps=1e-5,
        norm_first=True,
        position="rope",
        rope_theta=160_000.0,
        local_rope_theta=10_000.0,
        ffn="geglu",
        bias=False,
        final_norm=True,
        first_attention_norm=False,
        local_window=4,
        global_every=2,
    )
    torch.manual_seed(3)
    encoder = Encoder(EncoderConfig(**{**values, **overrides}))
    perturb(encoder, seed=3)
    return encoder.eval()


def test_modernbert_export_loads_in_transformers(tmp_path, tokenizer_dir, vocab_size):
    encoder = modern_encoder(vocab_size)
    head = MaskedLMHead(encoder)
    perturb(
        head, seed=4
    )  # the tied decoder weight is the word embedding: perturbed again, identically shared
    assert set(head.own_state_dict()) == {"dense.weight", "layer_norm.weight", "decoder.bias"}  # bias=false
    out = tmp_path / "modernbert"
    out.mkdir()
    hf.save_hf(out, encoder, tokenizer_dir, mlm_head=head.own_state_dict())
    model = transformers.AutoModelForMaskedLM.from_pretrained(out, attn_implementation="sdpa").eval()
    assert type(model) is transformers.ModernBertForMaskedLM
    inputs = padded_batch(vocab_size, pad_id=0)
    real = inputs["attention_mask"].bool()
    with torch.no_grad():
        ours = encoder(inputs["input_ids"], inputs["attention_mask"])
        assert (ours - model.model(**inputs).last_hidden_state)[real].abs().max().item() < TOL
        assert (head.eval()(ours) - model(**inputs).logits)[real].abs().max().item() < TOL
    # And back: importing the export gives our encoder's tensors again.
    again = hf.load_hf_encoder(out).state_dict()
    assert all(torch.equal(again[k], v) for k, v in encoder.state_dict().items())


@pytest.mark.parametrize(
    ("overrides", "option"),
    [({"bias": True}, "encoder.bias"), ({"ffn": "gelu"}, "encoder.ffn"), ({"local_window": 4}, "")],
)
def test_modernbert_export_refuses_other_options(tmp_path, tokenizer_dir, vocab_size, overrides, option):
    if not option:  # learned positions never reach the ModernBERT writer: its config translation refuses them
        config = modern_encoder(vocab_size, position="learned").config
        with pytest.raises(UserError, match=r"encoder\.position='learned'"):
            hf_modernbert.config_to_hf(config)
        return
    with pytest.raises(UserError, match=rf"{option}=.*ModernBERT") as err:
        hf.save_hf(tmp_path, modern_encoder(vocab_size, **overrides), tokenizer_dir)
    assert "\n" not in str(err.value)


def test_unsupported_model_type_names_every_supported_one(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "albert", "vocab_size": 30}))
    with pytest.raises(UserError) as err:
        FromHuggingFace(path=str(tmp_path))
    message = str(err.value)
    assert "albert" in message and "\n" not in message
    for model_type in ("bert", "roberta", "distilbert", "electra", "modernbert"):
        assert f"{model_type} (" in message


def test_bpe_tokenizer_from_vocab_and_merges(bpe_dir, tmp_path):
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((bpe_dir / name).read_bytes())
    tokenizer = load_tokenizer(tmp_path)  # no tokenizer.json: RoBERTa's two files
    assert special_token_ids(tokenizer) == {"cls": 0, "pad": 1, "sep": 2, "unk": 3, "mask": 4}
    encoding = tokenizer.encode("a charming film <mask>", "dull plot")
    assert encoding.tokens[0] == "<s>" and encoding.tokens[-1] == "</s>" and "<mask>" in encoding.tokens
    assert set(encoding.type_ids) == {0}  # one token type, as RoBERTa
    assert tokenizer.encode("charming film").ids == load_tokenizer(bpe_dir).encode("charming film").ids


def test_word_start_ids(bpe_dir, tokenizer_dir):
    bpe = load_tokenizer(bpe_dir)
    starts = word_start_ids(bpe)
    assert starts.dtype == torch.bool and starts.shape == (bpe.get_vocab_size(),)
    tokens = bpe.encode(" a charming film").tokens[1:-1]
    assert all(starts[bpe.token_to_id(t)] == t.startswith("Ġ") for t in tokens)
    assert starts[[bpe.token_to_id(t) for t in ROBERTA_SPECIALS]].all()
    wordpiece = load_tokenizer(tokenizer_dir)
    starts = word_start_ids(wordpiece)
    pieces = wordpiece.encode("encoders tediously").tokens
    assert any(p.startswith("##") for p in pieces)
    assert [bool(starts[wordpiece.token_to_id(p)]) for p in pieces] == [
        not p.startswith("##") for p in pieces
    ]


@pytest.mark.slow  # ~9 s; the import itself is checked in the default suite
def test_finetune_imported_roberta_through_the_cli(roberta_dir, data_dir, tmp_path):
    """``encoderlab-train init=hf`` on a RoBERTa directory: BPE tokenizer, offset positions, one token type."""
    directory, _ = roberta_dir
    run_dir = tmp_path / "run"
    args = [
        "experiment=finetune_sst2",
        *FAST,
        "init=hf",
        f"init.path={directory}",
        f"hydra.run.dir={run_dir}",
    ]
    result = run_train(args, cli_env(data_dir, tmp_path / "cache"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"val/acc", "test/acc"} <= set(json.loads((run_dir / "metrics.json").read_text()))
    # The run tokenized with the checkpoint's BPE (no WordPiece was trained): <s> text </s>.
    run_tokenizer = load_tokenizer(RunDir(run_dir).tokenizer)
    assert run_tokenizer.to_str() == load_tokenizer(directory).to_str()
    tokens = run_tokenizer.encode("a charming film").tokens
    assert (tokens[0], tokens[-1]) == ("<s>", "</s>")
    assert not (tmp_path / "cache" / "tokenizers").exists()
    state = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    tuned = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    imported = hf.load_hf_encoder(directory).state_dict()
    assert set(tuned) == set(imported)
    drift = max((tuned[k] - imported[k]).abs().max().item() for k in imported)
    assert 0 < drift < 0.05  # a few small steps from the imported weights, not a fresh encoder
