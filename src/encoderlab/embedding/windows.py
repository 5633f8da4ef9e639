"""One vector per document however long: each text read in overlapping windows (``data/windows.py``, the
windows fine-tuning reads), each window pooled as a text is, the windows' vectors combined by ``mean`` or
``max`` (:func:`encoderlab.models.heads.pool_windows`), then scaled to unit length if asked.

A text that fits in one window gets exactly the vector truncation gives it. The cost is the windows: a
document of ``n`` tokens takes about ``n / window_stride`` windows through the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

from encoderlab.data.tokenizer import encoding_copy
from encoderlab.data.windows import DEFAULT_MAX_WINDOWS, WindowCollator, Windows
from encoderlab.models.heads import pool, pool_windows
from encoderlab.validate import at_least, check, one_of

WINDOW_POOLINGS = ("mean", "max")  # attention pooling is learnt by a fine-tuned head, not chosen here


@torch.inference_mode()
def encode_windows(
    encoder: nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    max_seq_len: int,
    window_stride: int | None = None,
    max_windows: int | None = DEFAULT_MAX_WINDOWS,
    pooling: str = "mean",
    window_pooling: str = "mean",
    normalize: bool = False,
    batch_size: int = 32,
    stride_key: str = "window_stride",
) -> torch.Tensor:
    """float32 [n, hidden] on the CPU, one row per text in input order.

    ``max_seq_len`` tokens a window (special tokens included), a new window every ``window_stride`` text
    tokens (None: half a window), at most ``max_windows`` per text (None: no cap); ``pooling`` (``cls``,
    ``mean``, ``max``, ``last``) makes each window's vector, ``window_pooling`` (``mean``, ``max``) a text's;
    ``batch_size`` texts go through the encoder together, with all their windows; ``stride_key`` names the
    stride in its error (a command's option).
    """
    check("window_pooling", window_pooling, one_of(*WINDOW_POOLINGS))
    check("batch_size", batch_size, at_least(1))
    windows = Windows(tokenizer, max_seq_len, window_stride, max_windows, stride_key=stride_key)
    device = next(encoder.parameters()).device
    encodings = encoding_copy(tokenizer, None).encode_batch(list(texts), add_special_tokens=False)
    documents = [windows.split(np.asarray(e.ids, dtype=np.int64)) for e in encodings]
    collate = WindowCollator(windows.pad_id)
    out = torch.empty(len(documents), encoder.config.hidden, dtype=torch.float32)
    # Texts with as many windows batched together: a batch's windows pad to within a few tokens.
    order = np.argsort([-len(d) for d in documents], kind="stable")
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate.inputs([documents[i] for i in index]).items()}
        hidden = encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        vectors = pool(hidden.float(), batch["attention_mask"], pooling)  # W,H
        vectors = pool_windows(vectors, batch["document_index"], window_pooling)  # B,H
        out[torch.from_numpy(index)] = (F.normalize(vectors, dim=-1) if normalize else vectors).cpu()
    return out
