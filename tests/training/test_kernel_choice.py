"""kernels=: the CPU kernels chosen per machine by measurement (or forced), cached, kept on resume."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from encoderlab.models.encoder import build
from encoderlab.models.heads import MaskedLMHead
from encoderlab.models.kernels import cpu_kernels, set_cpu_kernels
from encoderlab.training import kernel_calibration
from encoderlab.training.kernel_calibration import CUSTOM, PLAIN, calibrate
from encoderlab.training.kernel_choice import KernelChoice, recorded_overrides
from encoderlab.validate import SettingError


def encoder(hidden=64, dropout=0.1):
    torch.manual_seed(0)
    return build(300, layers=2, hidden=hidden, heads=4, dropout=dropout, attention_dropout=dropout)


def test_switches_reach_every_module_and_the_plain_dropout_is_f_dropout():
    model = encoder()
    head = MaskedLMHead(model)
    both = torch.nn.ModuleList([model, head])
    assert cpu_kernels(both) == CUSTOM
    set_cpu_kernels(both, **PLAIN)
    assert cpu_kernels(both) == PLAIN
    assert all(not m.onednn for m in both.modules() if hasattr(m, "onednn"))
    x = torch.randn(4, 7, 64)
    layer = model.layers[0].dropout.train()
    torch.manual_seed(3)
    ours = layer(x)
    torch.manual_seed(3)
    torch.testing.assert_close(ours, F.dropout(x, 0.1, True))  # plain: the very same op and mask
    with pytest.raises(ValueError, match="kernels.linear=mkl"):
        set_cpu_kernels(both, linear="mkl")


def test_every_setting_gives_the_same_loss_and_gradients_without_dropout():
    ids = torch.randint(5, 300, (3, 11))
    results = []
    for settings in (PLAIN, CUSTOM):
        model = encoder(dropout=0.0)
        set_cpu_kernels(model, **settings)
        loss = model(ids).pow(2).mean()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def fake_timer(ms_by_setting):
    seen = []

    def timer(layer, x, settings, train):
        seen.append(dict(settings))
        return ms_by_setting(settings)

    return timer, seen


def test_calibration_keeps_a_custom_kernel_only_when_measurably_faster():
    # oneDNN 10 % faster: kept; the bits mask 1 % faster: inside the margin, plain kept; math attention slower.
    def ms(s):
        return (
            100
            * (0.9 if s["linear"] == "onednn" else 1)
            * (0.99 if s["dropout"] == "bits" else 1)
            * (1.2 if s["attention"] == "math" else 1)
        )

    timer, seen = fake_timer(ms)
    choice, timings = calibrate(encoder(), 8, 16, True, {}, timer=timer)
    assert choice == {"linear": "onednn", "dropout": "torch", "attention": "sdpa"}
    assert timings["linear"] == {"torch": 100.0, "onednn": 90.0}
    assert set(timings) == {"linear", "dropout", "attention"}
    assert all(s["linear"] == "onednn" for s in seen[len(seen) // 3 :])  # later switches build on it


def test_the_linear_switch_counts_every_layer_and_the_vocabulary_projection():
    # One layer: oneDNN 1 % slower (plain kept without a decoder); the projection: oneDNN 40 % faster.
    def layer_ms(s):
        return 101.0 if s["linear"] == "onednn" else 100.0

    def decoder_ms(x, weight, s, train):
        assert x.shape[1] == weight.shape[1] == 64 and weight.shape[0] == 300
        return 60.0 if s["linear"] == "onednn" else 100.0

    timer, _ = fake_timer(layer_ms)
    alone, _ = calibrate(encoder(dropout=0.0), 8, 16, True, {}, timer=timer)
    assert alone["linear"] == "torch"
    timer, _ = fake_timer(layer_ms)
    choice, timings = calibrate(
        encoder(dropout=0.0), 8, 16, True, {}, timer=timer, decoder=(19, 64, 300), decoder_timer=decoder_ms
    )
    assert choice["linear"] == "onednn"
    assert timings["linear"] == {"torch": 2 * 100.0 + 100.0, "onednn": 2 * 101.0 + 60.0}  # 2 layers + head


def test_calibration_respects_forced_switches_and_skips_what_cannot_matter():
    timer, seen = fake_timer(lambda s: 50.0 if s["dropout"] == "bits" else 100.0)
    choice, timings = calibrate(encoder(dropout=0.0), 8, 16, True, {"linear": "torch"}, timer=timer)
    assert choice["linear"] == "torch" and set(timings) == set()  # no dropout: nothing left to measure
    assert not seen
    timer, seen = fake_timer(lambda s: 50.0 if s["dropout"] == "bits" else 100.0)
    choice, _ = calibrate(encoder(), 8, 16, True, {"linear": "torch"}, timer=timer)
    assert choice == {"linear": "torch", "dropout": "bits", "attention": "sdpa"}
    assert all(s["linear"] == "torch" for s in seen)


def test_real_calibration_leaves_the_model_and_the_random_stream_alone():
    model = encoder()
    before = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(11)
    state = torch.get_rng_state()
    choice, timings = calibrate(model, 4, 16, True, {}, rounds=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())
    assert cpu_kernels(model) == CUSTOM  # the copy was switched, not the model
    assert set(choice) == set(CUSTOM) and all(v > 0 for t in timings.values() for v in t.values())


class Module(pl.LightningModule):
    def __init__(self, model):
        super().__init__()
        self.encoder = model
        self.head = MaskedLMHead(model)


def trainer(precision="32-true"):
    return SimpleNamespace(
        precision=precision,
        datamodule=SimpleNamespace(batch_size=8, max_seq_len=32),
        is_global_zero=True,
        strategy=SimpleNamespace(broadcast=lambda obj, src=0: obj),
    )


@pytest.fixture(autouse=True)
def allocator_options(monkeypatch):
    """The malloc policy each fit start asks for; the real one is process-wide (tests/training/test_allocator)."""
    asked = []

    def record(option):
        asked.append(option)
        return option

    monkeypatch.setattr("encoderlab.training.kernel_choice.apply_allocator", record)
    return asked


decoders: list = []  # the vocabulary projection each fake calibration was given


@pytest.fixture
def counted(monkeypatch):
    calls = []
    decoders.clear()

    def fake(encoder, batch, seq, train, fixed, max_gflop, decoder=None):
        calls.append((batch, seq, train, dict(fixed)))
        decoders.append(decoder)
        return {**PLAIN, "linear": "onednn", **fixed}, {"linear": {"torch": 2.0, "onednn": 1.0}}

    monkeypatch.setattr(kernel_calibration, "calibrate", fake)
    return calls


def test_the_choice_is_measured_once_then_cached_and_applied(tmp_path, counted):
    cache = tmp_path / "kernels.json"
    first = KernelChoice(cache=str(cache), min_gflop=1e-6)
    module = Module(encoder())
    first.on_fit_start(trainer(), module)
    assert counted == [(8, 32, True, {})]
    assert decoders == [(38, 64, 300)]  # the MLM head's projection: 15 % of 8 × 32 rows, width 64, V 300
    assert first.describe()["how"] == "measured" and first.describe()["linear"] == "onednn"
    assert cpu_kernels(module) == {**PLAIN, "linear": "onednn"}
    assert json.loads(cache.read_text())  # one entry, keyed by machine and shape
    again = KernelChoice(cache=str(cache), min_gflop=1e-6)
    again.on_fit_start(trainer(), Module(encoder()))
    assert len(counted) == 1 and again.describe()["how"] == "cached"
    assert again.describe()["timings_ms"] == {"linear": {"torch": 2.0, "onednn": 1.0}}
    other_shape = KernelChoice(cache=str(cache), min_gflop=1e-6)
    other_shape.on_fit_start(trainer(), Module(encoder(hidden=32)))
    assert len(counted) == 2


def test_resume_keeps_the_choice_and_forced_or_small_runs_are_not_measured(counted, allocator_options):
    first = KernelChoice(min_gflop=1e-6)
    first.on_fit_start(trainer(), Module(encoder()))
    resumed = KernelChoice(min_gflop=1e-6)
    resumed.load_state_dict(first.state_dict())
    module = Module(encoder())
    resumed.on_fit_start(trainer(), module)
    assert len(counted) == 1 and resumed.describe()["how"] == "kept from the checkpoint"
    assert cpu_kernels(module) == first.choice
    forced = KernelChoice(linear="torch", dropout="torch", attention="math")
    forced.on_fit_start(trainer(), Module(encoder()))
    assert forced.describe() == {
        "linear": "torch",
        "dropout": "torch",
        "attention": "math",
        "allocator": "system",  # auto, and a test-size layer: not worth keeping memory for
        "how": "forced",
    }
    small = KernelChoice(min_gflop=1e9)
    small.on_fit_start(trainer(), Module(encoder()))
    assert small.choice == CUSTOM and "kernels.min_gflop" in small.describe()["how"]
    mixed = KernelChoice(dropout="torch", min_gflop=1e-6)
    mixed.on_fit_start(trainer("bf16-mixed"), Module(encoder()))
    assert mixed.choice == {**CUSTOM, "dropout": "torch"} and "bf16-mixed" in mixed.describe()["how"]
    assert len(counted) == 1
    # auto keeps freed memory where the layers were big enough to measure; a forced option is obeyed.
    assert allocator_options == ["retain", "retain", "system", "system", "retain"]
    forced_system = KernelChoice(allocator="system", min_gflop=1e-6)
    forced_system.on_fit_start(trainer(), Module(encoder()))
    assert allocator_options[-1] == "system" and forced_system.describe()["allocator"] == "system"
    assert recorded_overrides({"kernels": forced.describe()}) == [
        "kernels.linear=torch",
        "kernels.dropout=torch",
        "kernels.attention=math",
        "kernels.allocator=system",
    ]
    assert recorded_overrides({}) == []


def test_an_unknown_kernel_is_refused_with_its_options():
    with pytest.raises(SettingError, match=r"kernels.attention=.flash.*math, sdpa"):
        KernelChoice(attention="flash")
    with pytest.raises(SettingError, match=r"kernels.allocator=.jemalloc.*retain, system"):
        KernelChoice(allocator="jemalloc")
