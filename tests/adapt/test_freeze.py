import pytest
import torch
from torch import nn

from encoderlab.adapt.freeze import (
    FreezeBottomK,
    FreezeEncoder,
    FreezeGradual,
    NoFreeze,
    freeze,
    freeze_for_optimizer,
)
from encoderlab.adapt.param_groups import param_groups
from encoderlab.adapt.unfreezing import GradualUnfreezing
from encoderlab.errors import UserError
from encoderlab.models.encoder import build
from encoderlab.models.heads import SequenceClassifier


class Task(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = build(vocab_size=40, layers=3, hidden=16, heads=2, dropout=0.0, attention_dropout=0.0)
        self.head = SequenceClassifier(self.encoder, num_labels=2, dropout=0.0)

    def forward(self, ids):
        return self.head(self.encoder(ids))


def train_steps(task: Task, steps: int = 3) -> None:
    opt = torch.optim.AdamW(param_groups(task, weight_decay=0.1), lr=1e-2)
    for _ in range(steps):
        ids = torch.randint(5, 40, (4, 6))
        loss = nn.functional.cross_entropy(task(ids), torch.randint(0, 2, (4,)))
        opt.zero_grad()
        loss.backward()
        opt.step()


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


@pytest.mark.parametrize(
    ("policy", "frozen_prefixes"),
    [
        (FreezeEncoder(), ("encoder.",)),
        (FreezeBottomK(k=2), ("encoder.embeddings.", "encoder.layers.0.", "encoder.layers.1.")),
        (NoFreeze(), ()),
    ],
)
def test_frozen_parameters_are_bitwise_unchanged_after_steps(policy, frozen_prefixes):
    task = Task()
    n_trainable = freeze(task, policy)
    before = snapshot(task)
    train_steps(task)
    after = snapshot(task)
    counted = 0
    for name, old in before.items():
        is_frozen = name.startswith(frozen_prefixes) if frozen_prefixes else False
        if is_frozen:
            assert torch.equal(old, after[name]), f"{name} changed although frozen"
        else:
            assert not torch.equal(old, after[name]), f"{name} did not train"
            counted += old.numel()
    assert counted == n_trainable


def test_optimizer_receives_only_trainable_parameters():
    task = Task()
    freeze(task, FreezeEncoder())
    groups = param_groups(task, weight_decay=0.1)
    params = [p for g in groups for p in g["params"]]
    assert params and all(p.requires_grad for p in params)
    assert sum(p.numel() for p in params) == sum(p.numel() for p in task.head.parameters())


def test_freeze_is_idempotent_and_reversible():
    task = Task()
    first = freeze(task, FreezeBottomK(k=1))
    assert freeze(task, FreezeBottomK(k=1)) == first
    assert freeze(task, NoFreeze()) == sum(p.numel() for p in task.parameters())


def test_static_policies_need_no_callbacks_and_gradual_brings_its_own():
    assert [p.callbacks() for p in (NoFreeze(), FreezeEncoder(), FreezeBottomK(k=1))] == [[], [], []]
    policy = FreezeGradual(every_n_steps=3)
    (callback,) = policy.callbacks()
    assert isinstance(callback, GradualUnfreezing) and callback.policy is policy


def test_the_optimizer_is_built_from_everything_a_policy_will_ever_train():
    task = Task()
    head = sum(p.numel() for p in task.head.parameters())
    assert freeze_for_optimizer(task, FreezeEncoder()) == head
    assert freeze(task, FreezeGradual(every_n_steps=3)) == head  # step 0: the head alone
    total = sum(p.numel() for p in task.parameters())
    assert freeze_for_optimizer(task, FreezeGradual(every_n_steps=3)) == total  # the last stage
    assert all(p.requires_grad for p in task.parameters())


def test_k_larger_than_layers_is_a_user_error():
    with pytest.raises(UserError, match=r"freeze.k=5 .* 3 layers"):
        freeze(Task(), FreezeBottomK(k=5))


def test_no_weight_decay_on_biases_norms_embeddings():
    task = Task()
    decay, no_decay = param_groups(task, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    no_decay_ids = {id(p) for p in no_decay["params"]}
    names = {n for n, p in task.named_parameters() if id(p) in no_decay_ids}
    assert "encoder.embeddings.word_embeddings.weight" in names
    assert "encoder.layers.0.attention_norm.weight" in names
    assert "encoder.layers.0.intermediate.bias" in names
    assert "encoder.layers.0.intermediate.weight" not in names
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(task.parameters()))
