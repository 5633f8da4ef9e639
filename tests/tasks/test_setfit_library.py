"""method=setfit_library: the SetFit library trains on the run's examples from the run's encoder, and the
task then predicts exactly what the library's own model predicts (its body and head taken over)."""

from __future__ import annotations

import pytest
import torch

from encoderlab.data.tokenizer import save_tokenizer, train_wordpiece
from encoderlab.models.encoder import build
from encoderlab.models.fitted_heads import VectorClassifier
from encoderlab.tasks.setfit_library import SetFitLibraryTask

pytest.importorskip(
    "setfit", reason="the SetFit library is not installed (pip install 'encoderlab[fewshot]')"
)

TEXTS = [
    "a good film",
    "great fun",
    "a fine cast",
    "lovely work",
    "a bad film",
    "dull mess",
    "poor cast",
    "awful",
]
LABELS = [1, 1, 1, 1, 0, 0, 0, 0]


@pytest.mark.slow  # importing setfit and training: about 15 s
def test_the_task_predicts_what_the_library_model_predicts(tmp_path):
    tokenizer = train_wordpiece(TEXTS * 4, vocab_size=60)
    save_tokenizer(tokenizer, tmp_path / "tok")
    torch.manual_seed(0)
    encoder = build(vocab_size=tokenizer.get_vocab_size(), layers=1, hidden=32, heads=2, max_positions=32)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    task = SetFitLibraryTask(encoder, VectorClassifier(encoder, num_labels=2), num_iterations=2, max_steps=3)
    model = task.train_with_library(TEXTS, LABELS, tmp_path / "tok", max_seq_len=16, seed=1)
    assert any(not torch.equal(before[k], v) for k, v in encoder.state_dict().items())  # the body trained

    batch = [tokenizer.encode(t) for t in TEXTS]
    width = max(len(e.ids) for e in batch)
    ids = torch.tensor([e.ids + [0] * (width - len(e.ids)) for e in batch])
    mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in batch])
    encoder.eval()
    with torch.no_grad():
        ours = task.head(encoder(ids, mask), mask).softmax(-1)
    theirs = torch.as_tensor(model.predict_proba(TEXTS), dtype=torch.float32)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert (
        task.fitted_parameters()["encoder.embeddings.word_embeddings.weight"]
        == encoder.embeddings.word_embeddings.weight.numel()
    )
