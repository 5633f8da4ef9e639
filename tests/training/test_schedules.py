import pytest
import torch

from encoderlab.training.schedules import constant, cosine, linear_warmup, warmup_stable_decay


def lrs(factory, steps=100, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = factory(opt, total_steps=steps, **kw)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_linear_warmup_rises_then_decays_to_zero():
    values = lrs(linear_warmup, warmup_steps=10)
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0) and values[-1] == pytest.approx(1 / 90)
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))


def test_cosine_reaches_min_ratio():
    values = lrs(cosine, steps=100, warmup_steps=0, min_ratio=0.1)
    assert values[0] == pytest.approx(1.0) and values[50] == pytest.approx(0.55) and values[-1] > 0.1


def test_constant_after_warmup():
    values = lrs(constant, warmup_steps=4)
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and set(values[4:]) == {1.0}


def test_warmup_stable_decay_holds_the_rate_then_decays_over_the_last_fraction():
    values = lrs(warmup_stable_decay, steps=100, warmup_steps=10, decay_ratio=0.2, min_ratio=0.1)
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert set(values[10:80]) == {1.0}  # stable until the last 20 % of the run
    assert values[90] == pytest.approx(0.55) and values[-1] == pytest.approx(1 - 0.9 * 19 / 20)
    assert all(a >= b for a, b in zip(values[80:], values[81:], strict=False))
