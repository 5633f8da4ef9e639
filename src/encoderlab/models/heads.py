"""Prediction networks that sit on an encoder's hidden states.

Each head takes the encoder it will sit on as its first argument, only to read sizes (and, for the MLM
head, to tie the decoder to the token embeddings); the encoder is not registered as a submodule, so a
task's checkpoint keys read ``encoder.*`` and ``head.*`` with no duplication.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.models.encoder import Encoder
from encoderlab.models.kernels import Linear, set_onednn_cpu_linear
from encoderlab.validate import boolean, check, one_of, probability


def _init_bert_style(module: nn.Module, std: float = 0.02) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class MaskedLMHead(nn.Module):
    """BERT's MLM head: dense → GELU → LayerNorm → decoder whose weight is the token-embedding matrix.

    Called on hidden states of the masked positions only ([M, H] → [M, V]), which is where the vocabulary
    projection's cost goes away. On an encoder whose embeddings are narrower than its hidden size (E < H,
    ELECTRA's generator) the dense layer maps H → E, so the tied decoder reads the embedding width. Its dense
    layer and LayerNorm follow the encoder's ``bias`` setting (ModernBERT's head has neither bias); the
    decoder keeps its bias.
    """

    # The decoder weight belongs to the encoder; these are the head's own tensors.
    TIED_KEYS = ("decoder.weight",)

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        config = encoder.config
        width = encoder.embeddings.word_embeddings.embedding_dim  # E (= H unless the embeddings are narrower)
        self.dense = Linear(config.hidden, width, bias=config.bias)
        self.layer_norm = nn.LayerNorm(width, eps=config.layer_norm_eps, bias=config.bias)
        self.decoder = Linear(width, config.vocab_size)
        self.apply(_init_bert_style)
        nn.init.zeros_(self.decoder.bias)
        self.decoder.weight = encoder.embeddings.word_embeddings.weight
        # Same matmul backend as the encoder (see encoderlab.models.kernels.linear).
        set_onednn_cpu_linear(self, getattr(encoder, "onednn_cpu_linear", True))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(F.gelu(self.dense(hidden))))

    def settings(self) -> dict:
        """Constructor values besides the encoder (a head is rebuilt from them for inference)."""
        return {}

    def own_state_dict(self) -> dict[str, torch.Tensor]:
        """The head's tensors without the tied embedding (what is kept for prompt-style reuse)."""
        return {k: v for k, v in self.state_dict().items() if k not in self.TIED_KEYS}


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """[B, S, H] → [B, H] by the first ([CLS]) token, the mean or the max over real tokens, or the last
    real token (a causal encoder's only position that has seen the whole sequence)."""
    if pooling == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
    if pooling == "last":
        # The highest real position of each row (right or left padding alike); a row of padding only → 0.
        positions = torch.arange(hidden.shape[1], device=hidden.device).expand(hidden.shape[0], -1)  # B,S
        last = positions.masked_fill(attention_mask == 0, -1).amax(1).clamp_min(0)  # B
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    mask = attention_mask[..., None].to(hidden.dtype)  # B,S,1
    if pooling == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    if pooling == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(1)
    raise ValueError(f"unknown pooling {pooling!r}; choose cls, mean, max or last")


WINDOW_POOLINGS = ("mean", "max", "attention")


def pool_windows(
    vectors: torch.Tensor, document_index: torch.Tensor, pooling: str, scores: torch.Tensor | None = None
) -> torch.Tensor:
    """[W, H] window vectors → [D, H], one per document: ``document_index`` [W] names each window's document
    (0 .. D-1). ``mean`` and ``max`` over a document's windows; ``attention`` weighs them by the softmax of
    ``scores`` [W] within each document (a learned scorer's output)."""
    documents = int(document_index.max()) + 1 if len(document_index) else 0
    index = document_index[:, None].expand_as(vectors)
    if pooling == "max":
        empty = vectors.new_full((documents, vectors.shape[1]), torch.finfo(vectors.dtype).min)
        return empty.scatter_reduce(0, index, vectors, "amax", include_self=False)
    if pooling == "mean":
        weights = vectors.new_ones(len(document_index))
    elif pooling == "attention":
        if scores is None:
            raise ValueError("attention pooling over windows needs the windows' scores")
        scores = scores.to(vectors.dtype)
        # Softmax per document: subtract each document's top score before exp, for stability.
        top = scores.new_full((documents,), float("-inf"))
        top = top.scatter_reduce(0, document_index, scores, "amax", include_self=False)
        weights = torch.exp(scores - top[document_index])
    else:
        raise ValueError(f"unknown window pooling {pooling!r}; choose {', '.join(WINDOW_POOLINGS)}")
    totals = weights.new_zeros(documents).index_add(0, document_index, weights)
    weights = weights / totals[document_index]
    pooled = vectors.new_zeros(documents, vectors.shape[1])
    return pooled.index_add(0, document_index, vectors * weights[:, None])


def natural_pooling(encoder: Encoder) -> str:
    """The pooling a classifier takes when none is chosen: [CLS] for a bidirectional encoder (today's
    default), the last real token for a causal one (its [CLS] position has seen nothing but itself)."""
    return "last" if encoder.config.attention == "causal" else "cls"


def sentence_pooling(encoder: Encoder) -> str:
    """The pooling of a text's vector when none is chosen (``encoderlab-embed``, the sentence-transformers
    export, ``method=embed_probe|knn|setfit``): the one the weights' source records (a sentence-transformers
    model: all-MiniLM-L6-v2 means), else the mean over real tokens for a bidirectional encoder ([CLS] is
    not trained to summarise the text by MLM) and the last real token for a causal one."""
    recorded = getattr(encoder, "source_pooling", None)
    if recorded:
        return recorded
    return "last" if encoder.config.attention == "causal" else "mean"


class PoolingHead(nn.Module):
    """No prediction network: the pooled sequence is the text's embedding, [B, S, H] → [B, H], of unit
    length with ``normalize``. Contrastive training learns through it, and a sentence-transformers export
    reproduces it exactly (its Pooling and Normalize modules). It holds no tensors."""

    POOLINGS = ("cls", "mean", "max", "last")

    def __init__(self, encoder: Encoder, pooling: str = "mean", normalize: bool = True) -> None:
        super().__init__()
        check("head.pooling", pooling, one_of(*self.POOLINGS))
        check("head.normalize", normalize, boolean)
        self.pooling = pooling
        self.normalize = normalize

    def settings(self) -> dict:
        return {"pooling": self.pooling, "normalize": self.normalize}

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        pooled = pool(hidden.float(), attention_mask, self.pooling)  # B,H; similarities in float32
        return F.normalize(pooled, dim=-1) if self.normalize else pooled


class ProjectionHead(nn.Module):
    """Pool the sequence, then one linear map into another encoder's vector space, [B, S, H] → [B, dims]:
    what a student learns through when it reproduces a teacher's sentence vectors (``task=distill``;
    ``dims`` comes from the teacher). The map is discarded with the head: the encoder is what is kept."""

    POOLINGS = PoolingHead.POOLINGS

    def __init__(self, encoder: Encoder, dims: int, pooling: str = "mean") -> None:
        super().__init__()
        check("head.pooling", pooling, one_of(*self.POOLINGS))
        if dims < 1:  # from the data (the teacher's width)
            raise ValueError(f"dims must be at least 1, got {dims}")
        self.pooling = pooling
        self.dims = dims
        self.reads_first_position_only = pooling == "cls"
        self.out = nn.Linear(encoder.config.hidden, dims)

    def settings(self) -> dict:
        return {"dims": self.dims, "pooling": self.pooling}

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(pool(hidden, attention_mask, self.pooling))


class SequenceClassifier(nn.Module):
    """Pool the sequence, then one linear layer, or two (dense → tanh → linear) with ``hidden_layers=2``.

    ``pooling=None`` takes the encoder's natural pooling (:func:`natural_pooling`); ``settings()`` records
    the pooling actually used, so a rebuilt head never depends on the encoder to decide it again.

    Documents read in windows (``data.long_documents=window``) arrive as windows with ``document_index``:
    each window is pooled as a sequence, then a document's windows combine by ``window_pooling`` (``mean``,
    ``max``, or ``attention``: a learned linear scorer and a softmax over the document's windows) before the
    output layers, so there is one prediction per document.
    """

    POOLINGS = ("cls", "mean", "max", "last")
    pools_windows = True  # reads batches of windows (the pairing checks let windowed data reach it)

    def __init__(
        self,
        encoder: Encoder,
        num_labels: int,
        pooling: str | None = None,
        dropout: float = 0.1,
        hidden_layers: int = 1,
        window_pooling: str = "mean",
    ) -> None:
        super().__init__()
        check("head.pooling", pooling, one_of(*self.POOLINGS), optional=True)
        pooling = natural_pooling(encoder) if pooling is None else pooling
        check("head.dropout", dropout, probability)
        check("head.hidden_layers", hidden_layers, one_of(1, 2))
        check("head.window_pooling", window_pooling, one_of(*WINDOW_POOLINGS))
        if num_labels < 1:  # from the data, which checks its labels itself
            raise ValueError(f"num_labels must be at least 1, got {num_labels}")
        hidden = encoder.config.hidden
        self.pooling = pooling
        # [CLS] pooling reads position 0 alone: the task then lets the encoder's last layer finish only it.
        self.reads_first_position_only = pooling == "cls"
        self.num_labels = num_labels
        self.hidden_layers = hidden_layers
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden, hidden) if hidden_layers == 2 else None
        self.out = nn.Linear(hidden, num_labels)
        self.window_pooling = window_pooling
        # No bias: a constant added to every window's score cancels in the softmax. Only attention pooling
        # has tensors of its own, so the other heads' checkpoint keys are what they always were.
        self.window_scorer = nn.Linear(hidden, 1, bias=False) if window_pooling == "attention" else None
        self.apply(_init_bert_style)

    def settings(self) -> dict:
        return {
            "num_labels": self.num_labels,
            "pooling": self.pooling,
            "hidden_layers": self.hidden_layers,
            "window_pooling": self.window_pooling,
        }

    def forward(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        document_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = pool(hidden, attention_mask, self.pooling)  # B,H (B windows when document_index is given)
        if document_index is not None:
            scores = self.window_scorer(x).squeeze(-1) if self.window_scorer is not None else None  # B
            x = pool_windows(x, document_index, self.window_pooling, scores)  # D,H
        if self.dense is not None:
            x = torch.tanh(self.dense(self.dropout(x)))
        return self.out(self.dropout(x))  # B (or D),num_labels


class TokenClassifier(nn.Module):
    """One label per token (NER, tagging): dropout → linear on every hidden state, [B, S, H] → [B, S, L]."""

    def __init__(self, encoder: Encoder, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        check("head.dropout", dropout, probability)
        if num_labels < 2:
            raise ValueError(f"a tagger needs at least 2 labels, got num_labels={num_labels}")
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(encoder.config.hidden, num_labels)
        self.apply(_init_bert_style)

    def settings(self) -> dict:
        return {"num_labels": self.num_labels}

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        # attention_mask is accepted for a uniform head call; padded positions are ignored by the loss.
        return self.out(self.dropout(hidden))  # B,S,num_labels


class ReplacedTokenHead(nn.Module):
    """ELECTRA's discriminator head (transformers' ``ElectraDiscriminatorPredictions``): dense → GELU →
    dense(1), one "was this token replaced?" logit per position, [B, S, H] → [B, S]."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        hidden = encoder.config.hidden
        self.dense = Linear(hidden, hidden)
        self.dense_prediction = Linear(hidden, 1)
        self.apply(_init_bert_style)
        set_onednn_cpu_linear(self, getattr(encoder, "onednn_cpu_linear", True))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        # attention_mask is accepted for a uniform head call; the task leaves padding out of the loss.
        return self.dense_prediction(F.gelu(self.dense(hidden))).squeeze(-1)  # B,S

    def settings(self) -> dict:
        return {}
