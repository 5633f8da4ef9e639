import pytest
import torch

from encoderlab.errors import UserError
from encoderlab.models.encoder import build
from encoderlab.models.heads import MaskedLMHead, SequenceClassifier, TokenClassifier, pool


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return build(vocab_size=60, layers=1, hidden=32, heads=2)


def test_mlm_decoder_is_tied_to_embeddings(encoder):
    head = MaskedLMHead(encoder)
    assert head.decoder.weight is encoder.embeddings.word_embeddings.weight
    assert head(torch.randn(5, 32)).shape == (5, 60)
    assert "decoder.weight" not in head.own_state_dict()
    assert set(head.own_state_dict()) == {
        "dense.weight",
        "dense.bias",
        "layer_norm.weight",
        "layer_norm.bias",
        "decoder.bias",
    }


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
@pytest.mark.parametrize("hidden_layers", [1, 2])
def test_classifier_shapes(encoder, pooling, hidden_layers):
    head = SequenceClassifier(encoder, num_labels=3, pooling=pooling, hidden_layers=hidden_layers)
    assert head(torch.randn(4, 7, 32), torch.ones(4, 7, dtype=torch.long)).shape == (4, 3)


def test_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").item() == 2.0
    assert pool(hidden, mask, "max").item() == 3.0
    assert pool(hidden, mask, "cls").item() == 1.0


def test_classifier_is_freshly_initialised(encoder):
    head = SequenceClassifier(encoder, num_labels=2)
    assert torch.count_nonzero(head.out.bias) == 0
    assert 0.01 < head.out.weight.std().item() < 0.03


def test_bad_head_arguments_name_their_setting(encoder):
    with pytest.raises(UserError, match="head.pooling='first' must be one of cls, mean, max"):
        SequenceClassifier(encoder, num_labels=2, pooling="first")
    with pytest.raises(UserError, match="head.hidden_layers=3 must be one of 1, 2"):
        SequenceClassifier(encoder, num_labels=2, hidden_layers=3)
    with pytest.raises(UserError, match=r"head.dropout=1.0 must be a number in \[0, 1\)"):
        TokenClassifier(encoder, num_labels=3, dropout=1.0)
