import time

import pytest
import torch

from encoderlab.training.throughput import Throughput


class Module:
    def __init__(self):
        self.logged = {}

    def log(self, name, value, **kwargs):
        self.logged[name] = value


def test_counts_real_tokens_per_second():
    callback, module = Throughput(window=2), Module()
    batch = {"input_ids": torch.zeros(4, 10, dtype=torch.long), "attention_mask": torch.ones(4, 10)}
    batch["attention_mask"][:, 5:] = 0  # half of every row is padding
    for i in range(2):
        callback.on_train_batch_start(None, module, batch, i)
        time.sleep(0.05)
        callback.on_train_batch_end(None, module, None, batch, i)
    tokens, examples = module.logged["train/tokens_per_s"], module.logged["train/examples_per_s"]
    assert 20 * 2 / 0.5 < tokens < 20 * 2 / 0.1  # 40 real tokens in about 0.1 s
    assert tokens / examples == pytest.approx(5)  # five real tokens per example, padding not counted
