"""Heads fitted in one go on one vector per text, rather than trained by gradient steps with the encoder.

The few-shot methods ``embed_probe``, ``knn`` and ``setfit`` (its second stage) compute the labelled
examples' vectors with the encoder, without gradient, and fit the head on them (when:
:mod:`encoderlab.tasks.fitted_head`). A fit leaves ordinary tensors of the head, so a run's checkpoint holds
them as ``head.*`` and ``encoderlab-predict`` rebuilds the head from its ``settings()`` and loads them like
any other head's.

- :class:`VectorClassifier`: a linear layer on the pooled vector, fitted as scikit-learn's
  ``LogisticRegression`` (the SetFit library's default head, ``fit=logistic_regression``) whose coefficients
  and intercepts become the layer's weight and bias, or trained with AdamW on the vectors (``fit=adamw``:
  SetFit's differentiable head with the encoder frozen).
- :class:`NearestNeighbourClassifier`: the labelled examples' unit vectors and labels kept as buffers; a text
  takes the vote of its ``k`` most cosine-similar examples.

Both return logits: softmax gives the logistic regression's ``predict_proba`` and the neighbours' vote
shares, so loss, metrics and predictions are the classifier's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.errors import UserError
from encoderlab.extras import require
from encoderlab.models.encoder import Encoder
from encoderlab.models.heads import pool, sentence_pooling
from encoderlab.validate import at_least, boolean, check, non_negative, one_of, positive

POOLINGS = ("cls", "mean", "max", "last")  # what models.heads.pool computes
# The bias of a class the labelled examples lack: the fit knows nothing of it, so it is never predicted.
ABSENT_CLASS_BIAS = -1.0e4


class VectorHead(nn.Module):
    """Pools [B, S, H] into one vector per text, [B, H] (float32; unit length with ``normalize``), and maps
    vectors to class logits with what ``fit(vectors, labels, seed)`` set.

    ``pooling=None`` takes :func:`encoderlab.models.heads.sentence_pooling` and ``normalize=None`` the source's
    own normalisation; ``settings()`` records what was used, so a rebuilt head never asks the encoder again. ``fitted_sizes`` (parameter name → elements) says what the last fit
    set, which the run counts as trained (``params/trainable``).
    """

    def __init__(
        self, encoder: Encoder, num_labels: int, pooling: str | None = None, normalize: bool | None = False
    ) -> None:
        super().__init__()
        check("head.pooling", pooling, one_of(*POOLINGS), optional=True)
        check("head.normalize", normalize, boolean, optional=True)
        if num_labels < 2:  # from the data, which checks its labels itself
            raise ValueError(f"a classifier needs at least 2 labels, got num_labels={num_labels}")
        self.num_labels = num_labels
        self.hidden = encoder.config.hidden
        self.pooling = sentence_pooling(encoder) if pooling is None else pooling
        # None: as the source's sentence vectors are (a sentence-transformers model ending in Normalize:
        # unit length), which is what the SetFit library fits its head on.
        self.normalize = bool(getattr(encoder, "source_normalize", False)) if normalize is None else normalize
        self.fitted_sizes: dict[str, int] = {}

    def vectors(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        pooled = pool(hidden.float(), attention_mask, self.pooling)  # B,H
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(self.vectors(hidden, attention_mask))  # B,num_labels

    def logits(self, vectors: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fit(self, vectors: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> None:
        """Fit on ``vectors`` [N, H] (this head's own, from :meth:`vectors`) with class ids ``labels`` [N]."""
        raise NotImplementedError

    def settings(self) -> dict:
        return {"num_labels": self.num_labels, "pooling": self.pooling}


class VectorClassifier(VectorHead):
    """A linear layer ``out`` on the text's vector, fitted on the labelled examples' vectors.

    ``fit="logistic_regression"``: scikit-learn's ``LogisticRegression(C=c, max_iter=max_iter)`` (lbfgs,
    multinomial), its defaults as the SetFit library uses them. Binary problems have one coefficient vector
    ``w``: the layer gets rows ``0`` and ``w`` (softmax over ``[0, z]`` is the sigmoid of ``z``), so the fit
    trains H + 1 parameters there, C·(H + 1) otherwise. ``fit="adamw"``: the layer itself trained with
    cross-entropy, AdamW (``lr``, weight decay ``l2_weight``), ``epochs`` passes over the vectors in shuffled
    batches of ``batch_size`` (SetFit's differentiable head: 1e-2, 0.01, 16 epochs of batches of 2).
    """

    FITS = ("logistic_regression", "adamw")

    def __init__(
        self,
        encoder: Encoder,
        num_labels: int,
        pooling: str | None = None,
        normalize: bool | None = False,
        fit: str = "logistic_regression",
        c: float = 1.0,
        max_iter: int = 100,
        lr: float = 1.0e-2,
        l2_weight: float = 0.01,
        epochs: int = 16,
        batch_size: int = 2,
    ) -> None:
        super().__init__(encoder, num_labels, pooling, normalize)
        check("head.fit", fit, one_of(*self.FITS))
        check("head.c", c, positive)
        check("head.max_iter", max_iter, at_least(1))
        check("head.lr", lr, positive)
        check("head.l2_weight", l2_weight, non_negative)
        check("head.epochs", epochs, at_least(1))
        check("head.batch_size", batch_size, at_least(1))
        self.fit_kind = fit
        self.c, self.max_iter = float(c), max_iter
        self.lr, self.l2_weight, self.epochs, self.batch_size = (
            float(lr),
            float(l2_weight),
            epochs,
            batch_size,
        )
        self.out = nn.Linear(self.hidden, num_labels)
        nn.init.zeros_(self.out.weight)  # unfitted: every class equally likely
        nn.init.zeros_(self.out.bias)

    def settings(self) -> dict:
        return {
            **super().settings(),
            "normalize": self.normalize,
            "fit": self.fit_kind,
            "c": self.c,
            "max_iter": self.max_iter,
            "lr": self.lr,
            "l2_weight": self.l2_weight,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
        }

    def logits(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.out(vectors.to(self.out.weight.dtype))

    def fit(self, vectors: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> None:
        present = torch.unique(labels)
        if len(present) < 2:
            raise UserError(
                f"the labelled examples hold one class only ({int(present[0])}) — a classifier needs two: "
                "draw more (data.train_sample) or a balanced sample (data.train_sample_per_class)"
            )
        if self.fit_kind == "logistic_regression":
            self._fit_logistic_regression(vectors, labels)
        else:
            self._fit_adamw(vectors, labels, seed)

    def _fit_logistic_regression(self, vectors: torch.Tensor, labels: torch.Tensor) -> None:
        linear_model = require("sklearn.linear_model", for_="head.fit=logistic_regression")
        model = linear_model.LogisticRegression(C=self.c, max_iter=self.max_iter)
        model.fit(vectors.double().cpu().numpy(), labels.cpu().numpy())
        self.load_logistic_regression(model)

    def load_logistic_regression(self, model) -> None:
        """This head's layer set to a fitted scikit-learn ``LogisticRegression`` (ours, or the SetFit
        library's ``model_head``): the same class probabilities from the same vectors."""
        classes = model.classes_.astype(np.int64)
        coef, intercept = model.coef_.astype(np.float64), model.intercept_.astype(np.float64)
        if len(classes) == 2:  # one vector w for the second class: logits [0, w·x + b]
            coef = np.concatenate([np.zeros_like(coef), coef])
            intercept = np.concatenate([np.zeros_like(intercept), intercept])
        weight = torch.zeros(self.num_labels, self.hidden, dtype=torch.float64)
        bias = torch.full((self.num_labels,), ABSENT_CLASS_BIAS, dtype=torch.float64)
        weight[classes] = torch.from_numpy(coef)
        bias[classes] = torch.from_numpy(intercept)
        with torch.no_grad():
            self.out.weight.copy_(weight)
            self.out.bias.copy_(bias)
        self.fitted_sizes = {"out.weight": model.coef_.size, "out.bias": model.intercept_.size}

    def _fit_adamw(self, vectors: torch.Tensor, labels: torch.Tensor, seed: int) -> None:
        vectors = vectors.to(self.out.weight)
        labels = labels.to(self.out.weight.device)
        generator = torch.Generator().manual_seed(seed)  # on the CPU, wherever the head is
        # SetFitHead's initialisation: Xavier-uniform weights, zero bias.
        start = nn.init.xavier_uniform_(torch.empty(self.out.weight.shape), generator=generator)
        with torch.no_grad():
            self.out.weight.copy_(start)
            self.out.bias.zero_()
        optimizer = torch.optim.AdamW(self.out.parameters(), lr=self.lr, weight_decay=self.l2_weight)
        for _ in range(self.epochs):
            for rows in torch.randperm(len(labels), generator=generator).split(self.batch_size):
                rows = rows.to(labels.device)
                loss = F.cross_entropy(self.out(vectors[rows]), labels[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        self.out.zero_grad(set_to_none=True)
        self.fitted_sizes = {name: p.numel() for name, p in self.out.named_parameters(prefix="out")}


class NearestNeighbourClassifier(VectorHead):
    """The ``k`` labelled examples most cosine-similar to a text vote for its class.

    The fit keeps the examples' unit vectors (``keys`` [N, H]) and class ids (``key_labels`` [N]) as buffers:
    nothing is trained (``fitted_sizes`` is empty) and ``num_examples`` records N, so the run rebuilds them.
    ``vote="similarity"``: each neighbour votes with its cosine similarity (at least 1e-6); ``"majority"``:
    one vote each. Ties go to the class whose neighbours are the more similar. ``k`` above N uses all N.
    """

    VOTES = ("similarity", "majority")
    TIE_BREAK = 1.0e-4  # × a class's mean neighbour similarity: decides equal votes, never a real majority

    def __init__(
        self,
        encoder: Encoder,
        num_labels: int,
        pooling: str | None = None,
        k: int = 7,
        vote: str = "similarity",
        num_examples: int = 0,
    ) -> None:
        super().__init__(encoder, num_labels, pooling, normalize=True)
        check("head.k", k, at_least(1))
        check("head.vote", vote, one_of(*self.VOTES))
        self.k = k
        self.vote = vote
        self.register_buffer("keys", torch.zeros(num_examples, self.hidden))
        self.register_buffer("key_labels", torch.zeros(num_examples, dtype=torch.long))

    @property
    def num_examples(self) -> int:
        return len(self.key_labels)

    def settings(self) -> dict:
        return {**super().settings(), "k": self.k, "vote": self.vote, "num_examples": self.num_examples}

    def fit(self, vectors: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> None:
        self.keys = F.normalize(vectors.float(), dim=-1).to(self.keys.device)
        self.key_labels = labels.long().to(self.keys.device)
        self.fitted_sizes = {}

    def logits(self, vectors: torch.Tensor) -> torch.Tensor:
        if self.num_examples == 0:
            raise RuntimeError("the nearest-neighbour head has no labelled examples: fit it first")
        k = min(self.k, self.num_examples)
        similarity, nearest = (vectors @ self.keys.T).topk(k, dim=1)  # B,k
        classes = self.key_labels[nearest]  # B,k
        weights = similarity.clamp_min(1e-6) if self.vote == "similarity" else torch.ones_like(similarity)
        votes = similarity.new_zeros(len(vectors), self.num_labels).scatter_add_(1, classes, weights)
        shares = votes / votes.sum(1, keepdim=True)
        closeness = similarity.new_zeros(votes.shape).scatter_add_(1, classes, similarity) / k
        # Log vote shares: softmax gives the shares back (classes nobody voted for: ~1e-6).
        return torch.log((shares + self.TIE_BREAK * closeness).clamp_min(1e-6))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # A resumed run's head is built before any fit: take the checkpoint's number of examples.
        for name in ("keys", "key_labels"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
