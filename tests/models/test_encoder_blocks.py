"""The encoder's block options, each against a plain reference written out here.

The reference forward below spells every option out in straightforward torch: RoPE as explicit rotation
matrices, GeGLU and GELU by hand, the local window as an explicit band and causality as an explicit lower
triangle. The encoder must match it in its outputs and gradients, with and without ``output_positions``.
"""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch
from safetensors.torch import save_file

from encoderlab.errors import UserError
from encoderlab.formats.export import CONFIG_FILE, FORMAT, WEIGHTS_FILE, load_encoder
from encoderlab.models.encoder import (
    MODERN_BLOCK,
    PRESETS,
    EncoderConfig,
    build,
    rotary_tables,
    rotate,
    select_positions,
)
from encoderlab.models.heads import MaskedLMHead
from tests.conftest import CONF_DIR

VOCAB, B, S, H, HEADS = 50, 2, 12, 32, 4
REAL = 8  # the second row's real tokens; the rest is padding

OPTIONS = {
    "bert": {},
    "rope": {"position": "rope", "rope_theta": 100.0},
    "geglu": {"ffn": "geglu", "intermediate": 48},
    "no_bias": {"bias": False},
    "pre_ln_no_first_norm": {"norm_first": True, "first_attention_norm": False},
    "post_ln_final_norm": {"final_norm": True},
    "pre_ln_no_final_norm": {"norm_first": True, "final_norm": False},
    "local": {"local_window": 4, "global_every": 2},
    "causal": {"attention": "causal"},
    "embedding_size": {"embedding_size": 16},
    "position_offset": {"position_offset": 2, "max_positions": 20},
    "no_token_types": {"type_vocab_size": 0},
    "causal_local_rope": {"attention": "causal", "local_window": 6, "global_every": 2, "position": "rope"},
    "modern": {**MODERN_BLOCK, "local_window": 4, "rope_theta": 1000.0, "local_rope_theta": 50.0},
}


def encoder(layers: int = 3, **options):
    torch.manual_seed(0)
    settings = {"dropout": 0.0, "attention_dropout": 0.0, **options}
    return build(VOCAB, layers=layers, hidden=H, heads=HEADS, **settings).eval()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(5, VOCAB, (B, S), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, REAL:] = 0
    ids[1, REAL:] = 0
    return ids, mask


# ------------------------------------------------------------------------------------------ reference


def rotation_matrices(seq_len: int, head_dim: int, theta: float) -> torch.Tensor:
    """[S, D, D]: position p turns the pair (d, d + D/2) by the angle p · theta^(−2d/D)."""
    half = head_dim // 2
    rotations = torch.zeros(seq_len, head_dim, head_dim)
    for p in range(seq_len):
        for d in range(half):
            angle = p * theta ** (-2 * d / head_dim)
            c, s = math.cos(angle), math.sin(angle)
            rotations[p, d, d], rotations[p, d, d + half] = c, -s
            rotations[p, d + half, d], rotations[p, d + half, d + half] = s, c
    return rotations


def dense(x, module):
    return x @ module.weight.T + (0 if module.bias is None else module.bias)


def norm(x, module):
    mean = x.mean(-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(-1, keepdim=True)
    y = (x - mean) / torch.sqrt(variance + module.eps) * module.weight
    return y + (0 if module.bias is None else module.bias)


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def allowed_keys(config: EncoderConfig, layer: int, mask: torch.Tensor) -> torch.Tensor:
    """[B, S, S]: which keys each query may see, from an explicit band, lower triangle and padding."""
    s = mask.shape[1]
    allowed = torch.ones(s, s, dtype=torch.bool)
    if config.local_window is not None and layer % config.global_every != 0:
        half = config.local_window // 2
        allowed = torch.ones(s, s).triu(-half).tril(half).bool()  # band |i − j| <= half
    if config.attention == "causal":
        allowed = allowed & torch.ones(s, s).tril().bool()
    return allowed[None] & mask.bool()[:, None, :]


def reference_forward(enc, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    c = enc.config
    e = enc.embeddings
    b, s = ids.shape
    x = e.word_embeddings.weight[ids]
    if c.position == "learned":
        x = x + e.position_embeddings.weight[c.position_offset : c.position_offset + s]
    if c.type_vocab_size > 0:
        x = x + e.token_type_embeddings.weight[0]
    x = norm(x, e.LayerNorm)
    if c.embedding_size != c.hidden:
        x = dense(x, e.projection)
    d = c.hidden // c.heads
    for i, layer in enumerate(enc.layers):
        a = layer.attention
        h = (
            x
            if (i == 0 and not c.first_attention_norm) or not c.norm_first
            else norm(x, layer.attention_norm)
        )
        q, k, v = (dense(h, m).view(b, s, c.heads, d).transpose(1, 2) for m in (a.query, a.key, a.value))
        if c.position == "rope":
            theta = c.local_rope_theta if c.is_local(i) else c.rope_theta
            rotations = rotation_matrices(s, d, theta)
            q, k = (torch.einsum("sde,bnse->bnsd", rotations, t) for t in (q, k))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)
        # A finite fill: a padded query with no visible key stays finite; real queries are unaffected.
        scores = scores.masked_fill(~allowed_keys(c, i, mask)[:, None], -1e9)
        y = dense((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, c.hidden), a.output)
        x = x + y if c.norm_first else norm(x + y, layer.attention_norm)
        h = norm(x, layer.output_norm) if c.norm_first else x
        up = dense(h, layer.intermediate)
        if c.ffn == "geglu":
            value, gate = up[..., : c.intermediate], up[..., c.intermediate :]
            f = dense(gelu(value) * gate, layer.output)
        else:
            f = dense(gelu(up), layer.output)
        x = x + f if c.norm_first else norm(x + f, layer.output_norm)
    return norm(x, enc.final_norm) if c.final_norm else x


def gradients(enc, output: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    enc.zero_grad()
    (output * weights).sum().backward()
    return {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", OPTIONS)
def test_each_option_matches_the_plain_reference_forward_and_gradients(name):
    enc = encoder(**OPTIONS[name])
    ids, mask = batch()
    real = mask.bool()
    weights = torch.randn(int(real.sum()), H, generator=torch.Generator().manual_seed(2))
    ours = enc(ids, mask)
    reference = reference_forward(enc, ids, mask)
    torch.testing.assert_close(ours[real], reference[real], atol=2e-5, rtol=1e-4)
    ours_grads = gradients(enc, ours[real], weights)
    reference_grads = gradients(enc, reference[real], weights)
    assert ours_grads.keys() == reference_grads.keys() == {n for n, _ in enc.named_parameters()}
    for key, grad in reference_grads.items():  # summed gradients (embeddings) are large: relative atol
        atol = 1e-5 * max(grad.abs().max().item(), 1.0)
        torch.testing.assert_close(ours_grads[key], grad, atol=atol, rtol=1e-4, msg=key)
    # Without padding SDPA runs without a mask (is_causal for a causal encoder): the same numbers.
    unpadded = reference_forward(enc, ids, torch.ones_like(mask))
    torch.testing.assert_close(enc(ids), unpadded, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", OPTIONS)
def test_each_option_with_output_positions_equals_selecting_the_full_output(name):
    enc = encoder(**OPTIONS[name])
    ids, mask = batch()
    full = enc(ids, mask)
    selected = torch.zeros(B, S, dtype=torch.bool)
    selected[0, [0, 5, 11]] = True
    selected[1, [2, 7]] = True
    torch.testing.assert_close(enc(ids, mask, output_positions=selected), full[selected])
    index = torch.tensor([[1, 10], [0, 6]])
    gathered = torch.stack([full[0, [1, 10]], full[1, [0, 6]]]).flatten(0, 1)
    torch.testing.assert_close(enc(ids, mask, output_positions=index), gathered)
    torch.testing.assert_close(enc(ids, output_positions=index), select_positions(enc(ids), index))


# ------------------------------------------------------------------------------------------ properties


def test_rope_scores_depend_only_on_the_offset_between_positions():
    head_dim, length, shift = 8, 6, 5
    generator = torch.Generator().manual_seed(3)
    q, k = (torch.randn(1, 1, length, head_dim, generator=generator) for _ in range(2))
    cos, sin = rotary_tables(length + shift, head_dim, 10000.0, torch.device("cpu"))

    def scores(start: int) -> torch.Tensor:
        rotary = (cos[start : start + length], sin[start : start + length])
        return rotate(q, rotary) @ rotate(k, rotary).transpose(-1, -2)

    torch.testing.assert_close(scores(shift), scores(0), atol=1e-5, rtol=1e-5)
    # The rotation matters: scores differ from the unrotated ones, and rotation keeps lengths.
    assert not torch.allclose(scores(0), q @ k.transpose(-1, -2), atol=1e-3)
    torch.testing.assert_close(rotate(q, (cos[:length], sin[:length])).norm(dim=-1), q.norm(dim=-1))


def silenced_first_layer(**options):
    """Two layers, layer 0 global with its attention output zeroed (so it mixes no positions), layer 1
    local or causal: what reaches position t comes only through layer 1's attention."""
    enc = encoder(layers=2, bias=False, **options)
    with torch.no_grad():
        enc.layers[0].attention.output.weight.zero_()
    return enc


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_local_attention_never_attends_past_its_window(position):
    enc = silenced_first_layer(local_window=6, global_every=2, position=position)  # layer 1: |i − j| <= 3
    ids = batch()[0][:1]
    t = 6

    def changed_at(model, j: int) -> bool:
        perturbed = ids.clone()
        perturbed[0, j] = (ids[0, j] + 7) % (VOCAB - 5) + 5
        return not torch.allclose(model(perturbed)[0, t], model(ids)[0, t], atol=1e-6)

    assert [changed_at(enc, j) for j in (2, 3, 9, 10)] == [False, True, True, False]
    # The same two layers without a window: the far tokens reach t.
    everywhere = silenced_first_layer(position=position)
    assert [changed_at(everywhere, j) for j in (2, 10)] == [True, True]


def test_a_causal_encoder_at_t_does_not_depend_on_later_tokens():
    enc = encoder(layers=3, attention="causal", position="rope", local_window=4, global_every=2)
    ids, mask = batch()
    t = 4
    later = ids.clone()
    later[:, t + 1 :] = torch.randint(5, VOCAB, (B, S - t - 1), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(enc(later, mask)[:, : t + 1], enc(ids, mask)[:, : t + 1])
    torch.testing.assert_close(enc(later[:1])[:, : t + 1], enc(ids[:1])[:, : t + 1])  # SDPA's is_causal
    earlier = ids.clone()
    earlier[:, t - 1] = (ids[:, t - 1] + 3) % (VOCAB - 5) + 5
    assert not torch.allclose(enc(earlier, mask)[:, t], enc(ids, mask)[:, t], atol=1e-6)
    # The same encoder bidirectional does look ahead.
    both = encoder(layers=3, position="rope", local_window=4, global_every=2)
    assert not torch.allclose(both(later, mask)[:, t], both(ids, mask)[:, t], atol=1e-6)


def test_causal_attention_with_dropout_on_cpu_keeps_to_earlier_positions():
    enc = encoder(layers=2, attention="causal", attention_dropout=0.5).train()
    ids, _ = batch()
    later = ids.clone()
    later[:, 6:] = 5
    torch.manual_seed(5)
    a = enc(ids[:1])
    torch.manual_seed(5)
    b = enc(later[:1])
    torch.testing.assert_close(a[:, :6], b[:, :6])


# ------------------------------------------------------------------------------------------ structure


def test_bias_false_leaves_no_bias_tensors_and_runs_on_both_matmul_paths():
    enc = encoder(bias=False, norm_first=True)
    assert not [n for n in enc.state_dict() if n.endswith("bias")]
    ids, mask = batch()
    plain = build(
        VOCAB, layers=3, hidden=H, heads=HEADS, bias=False, norm_first=True, onednn_cpu_linear=False
    )
    plain.load_state_dict(enc.state_dict())
    torch.testing.assert_close(plain.eval()(ids, mask), enc(ids, mask), atol=1e-5, rtol=1e-5)


def test_first_attention_norm_false_drops_only_layer_zeros_norm():
    names = set(encoder(norm_first=True, first_attention_norm=False).state_dict())
    assert "layers.0.attention_norm.weight" not in names
    assert {"layers.1.attention_norm.weight", "layers.0.output_norm.weight"} <= names


def test_geglu_doubles_the_intermediate_projection():
    enc = encoder(ffn="geglu", intermediate=48)
    assert enc.layers[0].intermediate.weight.shape == (96, H)
    assert enc.layers[0].output.weight.shape == (H, 48)


def test_embedding_size_projects_narrow_embeddings_and_the_mlm_head_ties_to_them():
    enc = encoder(embedding_size=16)
    state = enc.state_dict()
    assert state["embeddings.word_embeddings.weight"].shape == (VOCAB, 16)
    assert state["embeddings.position_embeddings.weight"].shape == (512, 16)
    assert state["embeddings.LayerNorm.weight"].shape == (16,)
    assert state["embeddings.projection.weight"].shape == (H, 16)
    ids, mask = batch()
    assert enc(ids, mask).shape == (B, S, H)
    head = MaskedLMHead(enc)
    assert head(enc(ids, mask)[mask.bool()]).shape == (int(mask.sum()), VOCAB)
    assert "embeddings.projection.weight" not in encoder().state_dict()


def test_position_offset_reads_later_rows_and_shortens_the_longest_input():
    enc = encoder(position_offset=2, max_positions=20)
    assert enc.embeddings.position_embeddings.weight.shape[0] == 20
    assert enc.config.max_sequence_length == 18
    enc(torch.ones(1, 18, dtype=torch.long))
    with pytest.raises(ValueError, match="max_positions 20 less position_offset 2"):
        enc(torch.ones(1, 19, dtype=torch.long))


def test_without_token_types_there_is_no_table_and_token_type_ids_are_ignored():
    enc = encoder(type_vocab_size=0)
    assert not [n for n in enc.state_dict() if "token_type" in n]
    ids, mask = batch()
    torch.testing.assert_close(enc(ids, mask, torch.ones_like(ids)), enc(ids, mask))


def test_rope_has_no_position_table():
    names = set(encoder(position="rope").state_dict())
    assert not [n for n in names if "position" in n]


def test_modern_presets_have_modernberts_block_and_a_bert_sized_ffn():
    for name in ("modern_tiny", "modern_mini", "modern_base"):
        preset = PRESETS[name]
        assert {k: preset[k] for k in MODERN_BLOCK} == MODERN_BLOCK
        hidden, intermediate = preset["hidden"], preset["intermediate"]
        assert intermediate % 64 == 0
        if name != "modern_base":  # ModernBERT-base's own 1152
            assert abs(intermediate - 8 * hidden / 3) <= 32  # 8H/3, to the nearest multiple of 64
    base = PRESETS["modern_base"]
    assert (base["layers"], base["hidden"], base["heads"], base["max_positions"]) == (22, 768, 12, 8192)


# ------------------------------------------------------------------------------------------ configs


OLD_CONFIG_KEYS = (
    "vocab_size", "layers", "hidden", "heads", "intermediate", "max_positions", "type_vocab_size", "dropout",
    "attention_dropout", "layer_norm_eps", "pad_token_id", "initializer_range", "norm_first",
)  # fmt: skip


def test_an_export_written_before_the_block_options_loads_as_todays_model(tmp_path):
    enc = encoder()
    old = {k: v for k, v in enc.config.to_dict().items() if k in OLD_CONFIG_KEYS}
    assert len(old) == len(OLD_CONFIG_KEYS)
    save_file(enc.state_dict(), str(tmp_path / WEIGHTS_FILE))
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, "format_version": 1, "config": old}))
    loaded = load_encoder(tmp_path).eval()
    assert loaded.config == enc.config
    ids, mask = batch()
    torch.testing.assert_close(loaded(ids, mask), enc(ids, mask), atol=0, rtol=0)


def test_block_options_round_trip_through_the_saved_config():
    config = encoder(**OPTIONS["modern"], embedding_size=16, attention="causal").config
    assert EncoderConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.embedding_size == 16 and config.final_norm is True and config.local_rope_theta == 50.0
    # Unset values are saved as what they stand for.
    defaults = encoder(norm_first=True).config
    assert (defaults.embedding_size, defaults.final_norm, defaults.local_rope_theta) == (H, True, 10000.0)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"position": "alibi"}, "encoder.position='alibi' must be one of learned, rope"),
        ({"ffn": "swiglu"}, "encoder.ffn='swiglu' must be one of gelu, geglu"),
        ({"attention": "prefix"}, "encoder.attention='prefix' must be one of bidirectional, causal"),
        ({"bias": "no"}, "encoder.bias='no' must be true or false"),
        ({"final_norm": 1}, "encoder.final_norm=1 must be true or false"),
        ({"rope_theta": 0}, "encoder.rope_theta=0 must be a number > 0"),
        ({"local_rope_theta": -1.0}, "encoder.local_rope_theta=-1.0 must be a number > 0"),
        ({"local_window": 0}, "encoder.local_window=0 must be an integer >= 1"),
        ({"global_every": 0}, "encoder.global_every=0 must be an integer >= 1"),
        ({"embedding_size": 0}, "encoder.embedding_size=0 must be an integer >= 1"),
        ({"type_vocab_size": -1}, "encoder.type_vocab_size=-1 must be an integer >= 0"),
        (
            {"position_offset": 512},
            "encoder.position_offset=512 must be smaller than encoder.max_positions=512",
        ),
        (
            {"first_attention_norm": False},
            "encoder.first_attention_norm=False must go with encoder.norm_first",
        ),
        (
            {"position": "rope", "heads": 16},
            r"encoder.position='rope' must go with an even head size .*= 1\)",
        ),
        (
            {"position": "rope", "position_init": "sinusoidal"},
            "position_init='sinusoidal' must go with encoder",
        ),
    ],
)
def test_build_names_the_block_setting_it_refuses(setting, message):
    with pytest.raises(UserError, match=message):
        build(VOCAB, **{"layers": 1, "hidden": 16, "heads": 2, **setting})


def test_every_preset_yaml_takes_every_block_option_as_an_override():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    settable = set(inspect.signature(build).parameters) - {"vocab_size", "pad_token_id", "onednn_cpu_linear"}
    presets = sorted(p.stem for p in (CONF_DIR / "encoder").glob("*.yaml"))
    assert {"modern_tiny", "modern_mini", "modern_base"} <= set(presets)
    small = ["layers=1", "hidden=16", "heads=2", "intermediate=32"]
    with initialize_config_dir(config_dir=str(CONF_DIR / "encoder"), version_base="1.3"):
        for name in presets:
            preset = compose(name)
            assert set(OmegaConf.to_container(preset)) - {"_target_", "_partial_"} == settable, name
            # The YAML and the Python preset agree.
            assert {k: preset[k] for k in PRESETS[name]} == PRESETS[name], name
            # Struct mode: a key missing from the YAML would need "+" here.
            cfg = compose(name, overrides=["position=rope", "attention=causal", *small])
            config = instantiate(cfg)(vocab_size=VOCAB).config
            assert (config.position, config.attention, config.layers) == ("rope", "causal", 1), name
