import pytest
import torch

from encoderlab.errors import UserError
from encoderlab.models.encoder import PRESETS, Encoder, EncoderConfig, build, from_preset


def tiny(**kw) -> Encoder:
    torch.manual_seed(0)
    return build(vocab_size=50, layers=2, hidden=32, heads=4, **kw)


def test_output_shape_and_presets():
    enc = tiny()
    ids = torch.randint(5, 50, (3, 7))
    assert enc(ids).shape == (3, 7, 32)
    for name, shape in PRESETS.items():
        cfg = from_preset(name, vocab_size=100).config
        assert (cfg.layers, cfg.hidden, cfg.heads) == (shape["layers"], shape["hidden"], shape["heads"])
        assert cfg.intermediate == shape.get("intermediate", 4 * cfg.hidden)


def test_padding_does_not_change_real_token_states():
    enc = tiny().eval()
    ids = torch.randint(5, 50, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], 1).long()
    torch.testing.assert_close(enc(padded, mask)[:, :6], enc(ids), atol=1e-5, rtol=1e-5)
    # Without the mask the pads are attended to, and the states differ.
    assert not torch.allclose(enc(padded)[:, :6], enc(ids), atol=1e-4)


def test_fixed_initialisation_statistics():
    enc = build(vocab_size=3000, layers=1, hidden=256, heads=4)
    w = enc.layers[0].intermediate.weight
    assert abs(w.std().item() - 0.02) < 0.002
    assert torch.count_nonzero(enc.layers[0].intermediate.bias) == 0
    assert torch.equal(enc.layers[0].output_norm.weight, torch.ones(256))
    assert torch.count_nonzero(enc.embeddings.word_embeddings.weight[0]) == 0  # padding row


def test_parameter_names_are_stable():
    names = set(tiny().state_dict())
    expected = {
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "layers.1.attention.query.weight",
        "layers.1.attention.key.bias",
        "layers.1.attention.value.weight",
        "layers.1.attention.output.weight",
        "layers.1.attention_norm.weight",
        "layers.1.intermediate.weight",
        "layers.1.output.bias",
        "layers.1.output_norm.bias",
    }
    assert expected <= names
    assert not any("position_ids" in n for n in names)


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout():
    enc = tiny()
    ids = torch.randint(5, 50, (2, 9))
    enc.eval()
    torch.testing.assert_close(enc(ids), enc(ids))
    enc.train()
    assert not torch.allclose(enc(ids), enc(ids))


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="divisible"):
        EncoderConfig(vocab_size=10, hidden=30, heads=4)
    cfg = tiny().config
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown encoder config keys"):
        EncoderConfig.from_dict({**cfg.to_dict(), "bogus": 1})


@pytest.mark.parametrize(
    "setting, message",
    [
        (
            {"heads": 3},
            "encoder.heads=3 must divide encoder.hidden=32 — choose encoder.heads from 1, 2, 4, 8, 16, 32",
        ),
        ({"dropout": 1.5}, r"encoder.dropout=1.5 must be a number in \[0, 1\)"),
        ({"attention_dropout": -0.1}, r"encoder.attention_dropout=-0.1 must be a number in \[0, 1\)"),
        ({"layers": 0}, "encoder.layers=0 must be an integer >= 1"),
        ({"hidden": "wide"}, "encoder.hidden='wide' must be an integer >= 1"),
        ({"max_positions": 2.5}, "encoder.max_positions=2.5 must be an integer >= 1"),
        ({"layer_norm_eps": 0}, "encoder.layer_norm_eps=0 must be a number > 0"),
        ({"position_init": "random"}, "encoder.position_init='random' must be one of normal, sinusoidal"),
    ],
)
def test_build_names_the_encoder_setting_it_refuses(setting, message):
    with pytest.raises(UserError, match=message):
        build(vocab_size=50, **{"layers": 1, "hidden": 32, "heads": 2, **setting})


def test_too_long_input_is_rejected():
    enc = build(vocab_size=20, layers=1, hidden=16, heads=2, max_positions=8)
    with pytest.raises(ValueError, match="max_positions"):
        enc(torch.ones(1, 9, dtype=torch.long))


def test_norm_first_layers_normalise_before_each_sublayer():
    torch.manual_seed(0)
    encoder = build(
        vocab_size=50, layers=1, hidden=16, heads=2, dropout=0.0, attention_dropout=0.0, norm_first=True
    )
    encoder.eval()
    ids = torch.randint(5, 50, (2, 7))
    layer = encoder.layers[0]
    x = encoder.embeddings(ids, None)
    x = x + layer.attention(layer.attention_norm(x), None)
    x = x + layer.output(torch.nn.functional.gelu(layer.intermediate(layer.output_norm(x))))
    torch.testing.assert_close(encoder(ids), encoder.final_norm(x))
    # Post-LN (BERT) encoders have no final norm, so their keys stay Hugging Face compatible.
    assert "final_norm.weight" in encoder.state_dict()
    assert "final_norm.weight" not in build(vocab_size=50, layers=1, hidden=16, heads=2).state_dict()


def test_sinusoidal_position_init_has_the_normal_init_scale_and_nearby_positions_alike():
    torch.manual_seed(0)
    encoder = build(vocab_size=50, layers=1, hidden=32, heads=2, position_init="sinusoidal")
    table = encoder.embeddings.position_embeddings.weight.detach()
    assert torch.allclose(table.pow(2).mean().sqrt(), torch.tensor(encoder.config.initializer_range))
    unit = torch.nn.functional.normalize(table, dim=1)
    assert (unit[10] @ unit[11]) > (unit[10] @ unit[200]) + 0.3
    # Only the starting weights differ: same parameters, same config (nothing saved about the init).
    plain = build(vocab_size=50, layers=1, hidden=32, heads=2)
    assert plain.config == encoder.config
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in encoder.named_parameters()]
    plain_unit = torch.nn.functional.normalize(plain.embeddings.position_embeddings.weight.detach(), dim=1)
    assert abs(float(plain_unit[10] @ plain_unit[11])) < 0.6


def test_unknown_position_init_is_refused():
    from encoderlab.errors import UserError

    with pytest.raises(UserError, match="position_init='learned'.*normal, sinusoidal"):
        build(vocab_size=50, layers=1, hidden=16, heads=2, position_init="learned")
