import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from encoderlab.adapt.init import FromExport
from encoderlab.errors import UserError
from encoderlab.formats.export import export_encoder, load_encoder, save_mlm_head
from encoderlab.models.encoder import build
from encoderlab.models.heads import MaskedLMHead


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    encoder = build(vocab_size=30, layers=2, hidden=16, heads=2)
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "vocab.txt").write_text("\n".join(f"t{i}" for i in range(30)))
    out = export_encoder(encoder, tok, tmp_path / "encoder")
    return encoder, out


def test_round_trip_is_exact_and_self_describing(exported):
    encoder, out = exported
    assert sorted(p.name for p in out.iterdir()) == ["encoder.json", "model.safetensors", "vocab.txt"]
    loaded = load_encoder(out)
    assert loaded.config == encoder.config
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_mlm_head_is_kept_apart(exported, tmp_path):
    encoder, out = exported
    head = MaskedLMHead(encoder)
    save_mlm_head(head, tmp_path / "mlm_head.safetensors")
    assert set(load_file(str(tmp_path / "mlm_head.safetensors"))) == set(head.own_state_dict())
    exported_keys = set(load_file(str(out / "model.safetensors")))
    assert exported_keys == set(encoder.state_dict())
    assert not any(k.startswith(("dense", "layer_norm", "decoder")) for k in exported_keys)


def test_wrapper_prefixes_are_stripped(exported):
    encoder, out = exported
    state = load_file(str(out / "model.safetensors"))
    save_file({f"_orig_mod.{k}": v for k, v in state.items()}, str(out / "model.safetensors"))
    assert torch.equal(
        load_encoder(out).embeddings.word_embeddings.weight, encoder.embeddings.word_embeddings.weight
    )


def test_missing_and_unexpected_keys_are_named(exported):
    _, out = exported
    state = load_file(str(out / "model.safetensors"))
    state.pop("layers.1.output.weight")
    state["head.extra"] = torch.zeros(1)
    save_file(state, str(out / "model.safetensors"))
    with pytest.raises(
        UserError, match=r"missing keys: layers\.1\.output\.weight.*unexpected keys: head\.extra"
    ):
        load_encoder(out)


def test_shape_mismatch_is_named(exported):
    _, out = exported
    meta = json.loads((out / "encoder.json").read_text())
    meta["config"]["intermediate"] = 32
    (out / "encoder.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"layers\.0\.intermediate\.weight \(64, 16\) vs \(32, 16\)"):
        load_encoder(out)


def test_bad_paths_and_damaged_files(exported, tmp_path):
    _, out = exported
    with pytest.raises(UserError, match="does not exist"):
        FromExport(str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="not an encoder export"):
        FromExport(str(tmp_path / "tok"))
    data = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="damaged"):
        load_encoder(out)


def test_vocab_mismatch_names_both_numbers(exported):
    _, out = exported
    with pytest.raises(UserError, match=r"29 tokens .* 30 embeddings"):
        FromExport(str(out)).build_encoder(lambda **_: None, vocab_size=29)


def test_dropout_can_be_changed_on_load_without_touching_weights(exported):
    encoder, out = exported
    loaded = FromExport(str(out), dropout=0.0, attention_dropout=0.25).build_encoder(
        lambda **_: None, vocab_size=30
    )
    assert (loaded.config.dropout, loaded.config.attention_dropout) == (0.0, 0.25)
    assert loaded.embeddings.dropout.p == 0.0 and loaded.layers[0].attention.attention_dropout == 0.25
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    kept = FromExport(str(out)).build_encoder(lambda **_: None, vocab_size=30)
    assert kept.config.dropout == encoder.config.dropout == 0.1


def test_dropout_override_out_of_range_is_refused(exported):
    _, out = exported
    with pytest.raises(UserError, match=r"init.dropout=1.0 must be a number in \[0, 1\)"):
        FromExport(str(out), dropout=1.0)


def test_failed_export_leaves_previous_export_untouched(exported, tmp_path):
    encoder, out = exported
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(UserError, match="no tokenizer files"):
        export_encoder(encoder, tmp_path / "empty_dir_without_tokenizer", out)
    assert (out / "model.safetensors").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".encoder")]
