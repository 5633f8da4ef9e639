"""SetFit (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts"): two stages.

1. The encoder body is fine-tuned on contrastive pairs of the labelled examples (same class: target 1,
   different classes: 0; :mod:`encoderlab.data.setfit` makes them): the cosine similarity of the two
   texts' vectors is pushed to the target by mean squared error (sentence-transformers'
   ``CosineSimilarityLoss``). These are ordinary training steps over batches of pairs, with the run's
   optimizer and schedule.
2. The head is fitted on the tuned encoder's vectors of the labelled examples, once the steps end
   (:class:`encoderlab.tasks.fitted_head.FittedHeadTask`): a logistic regression (the library's default),
   a linear layer trained on the frozen vectors (``head.fit=adamw``), or nearest neighbours (``head=knn``).

``params/trainable`` counts both: the encoder's parameters that the pair loss updated and what the head's
fit set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from encoderlab.data.base import Targets
from encoderlab.models.length_groups import encode_in_length_groups
from encoderlab.tasks.fitted_head import FittedHeadTask


class SetFitTask(FittedHeadTask):
    kind = "setfit"
    targets = Targets.CLASS_PAIRS
    takes_training_steps = True
    usage = (
        "task=setfit goes with head=logistic_regression (or head=knn) and SetFit's pair data: method=setfit "
        "(e.g. method=setfit experiment=fewshot_sst2)"
    )

    def training_step(self, batch, batch_idx):
        loss = self.pair_loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def pair_loss(self, batch) -> torch.Tensor:
        """Mean squared error between the cosine similarity of each pair's vectors and its target."""
        vectors = encode_in_length_groups(  # random pairs: group the texts by length, not pad to the longest
            self.encoder,
            self.head.vectors,
            batch["input_ids"],
            batch["attention_mask"],
            batch.get("token_type_ids"),
        )
        first, second = vectors.chunk(2)  # the collator puts first texts first
        return F.mse_loss(F.cosine_similarity(first, second, dim=-1), batch["similarity"].float())
