"""LoRA through peft on the encoder: targets, what trains, merging."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from encoderlab.adapt.adapters import LoRA, adapter_state, merge_lora
from encoderlab.adapt.freeze import NoFreeze, freeze
from encoderlab.errors import UserError
from encoderlab.models.encoder import build
from encoderlab.models.heads import SequenceClassifier
from encoderlab.models.kernels import Linear


class Task(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = build(vocab_size=60, layers=2, hidden=16, heads=2)
        self.head = SequenceClassifier(self.encoder, num_labels=3)


def test_unknown_target_lists_the_available_names():
    with pytest.raises(UserError) as err:
        LoRA(target_modules=["query", "qkv_proj"]).apply(build(vocab_size=60, layers=1, hidden=16, heads=2))
    message = str(err.value)
    assert "qkv_proj" in message and "'query'" not in message
    for name in ("query", "key", "value", "output", "intermediate"):
        assert name in message


def test_base_frozen_adapters_and_head_train():
    task = Task()
    LoRA(r=2, target_modules=["query", "value", "intermediate"]).apply(task.encoder)
    trainable = freeze(task, NoFreeze())  # re-applied on resume: adapters keep the base frozen
    names = {n for n, p in task.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n or n.startswith("head.") for n in names)
    assert {n for n in names if n.startswith("head.")} == {"head.out.weight", "head.out.bias"}
    assert sum(1 for n in names if "lora_A" in n) == 2 * 3
    assert trainable == sum(p.numel() for n, p in task.named_parameters() if p.requires_grad)
    assert set(adapter_state(task.encoder)) == {n.removeprefix("encoder.") for n in names if "lora_" in n}


def test_merged_encoder_matches_the_adapted_one():
    torch.manual_seed(0)
    encoder = build(vocab_size=60, layers=2, hidden=16, heads=2).eval()
    LoRA(r=4, target_modules=["query", "key", "value", "output", "intermediate"]).apply(encoder)
    for name, p in encoder.named_parameters():
        if "lora_B" in name:  # B starts at zero; give the update a value so merging matters
            nn.init.normal_(p, std=0.2)
    ids = torch.randint(5, 60, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    adapted = encoder(ids, mask)
    plain = build(vocab_size=60, layers=2, hidden=16, heads=2).eval()
    merged = merge_lora(copy.deepcopy(encoder))
    assert set(merged.state_dict()) == set(plain.state_dict())  # an export's keys again
    assert isinstance(merged.layers[1].attention.query, Linear)
    assert not torch.allclose(merged(ids, mask), plain(ids, mask))
    torch.testing.assert_close(merged(ids, mask), adapted, atol=1e-5, rtol=0)
