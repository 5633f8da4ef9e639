"""Parameter groups: the no-decay rule, trainable parameters only, layer-wise learning rates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from encoderlab.adapt.freeze import FreezeBottomK, freeze
from encoderlab.adapt.param_groups import LayerwiseLR, param_groups
from encoderlab.errors import UserError
from encoderlab.models.encoder import build
from encoderlab.models.heads import SequenceClassifier


class Task(nn.Module):
    def __init__(self, layers: int = 3) -> None:
        super().__init__()
        self.encoder = build(vocab_size=50, layers=layers, hidden=16, heads=2)
        self.head = SequenceClassifier(self.encoder, num_labels=2)


def lr_of(groups: list[dict], param: torch.Tensor) -> float:
    (lr,) = [g["lr"] for g in groups if any(p is param for p in g["params"])]
    return lr


def test_layer_decay_and_head_lr():
    task = Task(layers=3)
    groups = param_groups(task, 0.01, lr=1e-3, rule=LayerwiseLR(layer_decay=0.5, head_lr=5e-3))
    enc = task.encoder
    assert lr_of(groups, enc.embeddings.word_embeddings.weight) == pytest.approx(1e-3 * 0.5**3)
    assert lr_of(groups, enc.embeddings.LayerNorm.bias) == pytest.approx(1e-3 * 0.5**3)
    for i, layer in enumerate(enc.layers, start=1):  # layer i of L=3 → lr · decay^(L-i)
        assert lr_of(groups, layer.attention.query.weight) == pytest.approx(1e-3 * 0.5 ** (3 - i))
        assert lr_of(groups, layer.output_norm.weight) == pytest.approx(1e-3 * 0.5 ** (3 - i))
    assert lr_of(groups, task.head.out.weight) == pytest.approx(5e-3)
    # Every trainable tensor exactly once; the no-decay rule still holds inside each depth.
    listed = [p for g in groups for p in g["params"]]
    assert len(listed) == len({id(p) for p in listed}) == len(list(task.parameters()))
    no_decay = {
        id(p) for m in task.modules() if isinstance(m, nn.LayerNorm | nn.Embedding) for p in m.parameters()
    }
    no_decay |= {id(p) for n, p in task.named_parameters() if n.endswith("bias")}
    for g in groups:
        decays = {id(p) not in no_decay for p in g["params"]}
        assert len(decays) == 1
        assert g["weight_decay"] == (0.01 if decays == {True} else 0.0)


def test_head_lr_alone_and_frozen_parameters_left_out():
    task = Task(layers=2)
    freeze(task, FreezeBottomK(k=1))
    groups = param_groups(task, 0.0, lr=1e-4, rule=LayerwiseLR(head_lr=1e-2))
    listed = {id(p) for g in groups for p in g["params"]}
    assert not any(id(p) in listed for p in task.encoder.layers[0].parameters())
    assert lr_of(groups, task.encoder.layers[1].intermediate.weight) == pytest.approx(1e-4)
    assert lr_of(groups, task.head.out.bias) == pytest.approx(1e-2)
    # Built into an optimizer, the per-group rates are what it uses.
    optimizer = torch.optim.AdamW(groups, lr=1e-4)
    assert sorted({g["lr"] for g in optimizer.param_groups}) == [1e-4, 1e-2]


def test_plain_rule_unchanged():
    groups = param_groups(Task(), 0.01)
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert all("lr" not in g for g in groups)


@pytest.mark.parametrize("kwargs", [{"layer_decay": 0.0}, {"layer_decay": 1.5}, {"head_lr": -1.0}])
def test_bad_rates_are_user_errors(kwargs):
    with pytest.raises(UserError, match="optimizer_groups"):
        LayerwiseLR(**kwargs)
