"""Training kernels behind the encoder and the MLM loss: drop-ins for PyTorch ops with faster paths.

Each matches the plain op within float tolerance (tests/models/test_optimised_paths.py); docs/performance.md
gives the measured gains.

- ``linear`` / ``Linear``: CPU fp32 matmuls, forward and backward, on oneDNN instead of the BLAS behind
  ``F.linear``; ``F.linear`` elsewhere. ``Linear`` is ``nn.Linear`` with the same parameters and keys.
- ``dropout`` / ``Dropout``: CPU dropout masks from 16-bit random integers (``bits``) or ``torch.rand``
  (``rand``); ``F.dropout`` elsewhere.
- ``attention``: ``F.scaled_dot_product_attention``, spelled out on CPU when attention dropout is on.
- ``vocab_cross_entropy``: ``F.cross_entropy`` over vocabulary logits with a one-pass backward (any device).

Which of the first three a model uses on the CPU is a per-module switch (:func:`set_cpu_kernels`), chosen
for the machine at hand by :mod:`encoderlab.training.kernel_choice`; ``CPU_KERNELS`` lists the options,
the plain PyTorch op last.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _OneDNNLinear(torch.autograd.Function):
    """y = x @ W.T + b with forward and backward matmuls on oneDNN (CPU, fp32; strided operands are fine)."""

    @staticmethod
    def _mm(a: torch.Tensor, b_t: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(a, b_t, bias, "none", [], "")  # a @ b_t.T (+ bias)

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        y = _OneDNNLinear._mm(x.reshape(-1, x.shape[-1]), weight, bias)  # *,out
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        # contiguous: an expanded gradient (a loss that is y.sum()) is a stride-0 view, on which oneDNN's
        # matmuls run ~300x slower (37 s vs 0.13 s for a 307 x 30,522 projection); the copy is one pass.
        g = grad.reshape(-1, grad.shape[-1]).contiguous()  # *,out
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _OneDNNLinear._mm(g, weight.t()).view(x.shape)  # g @ W
        if ctx.needs_input_grad[1]:
            x2 = x.reshape(-1, x.shape[-1])
            if weight.shape[0] > weight.shape[1]:
                # Wide outputs (FFN up-projection, q/k/v, the MLM decoder): (x.T @ g).T avoids copying the
                # large transposed g, e.g. the [V, M] logits gradient of the decoder.
                grad_w = _OneDNNLinear._mm(x2.t(), g.t()).t()  # (x.T @ g).T
            else:
                grad_w = _OneDNNLinear._mm(g.t(), x2.t())  # g.T @ x
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b


_HAS_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, onednn: bool = True
) -> torch.Tensor:
    """``F.linear``, except that CPU fp32 work (outside autocast) runs on oneDNN when ``onednn`` is set."""
    use_onednn = (
        onednn
        and _HAS_ONEDNN
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and x.numel() > 0
        and not torch.is_autocast_enabled("cpu")
    )
    if use_onednn:
        return _OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


# Per switch: the options, the custom kernel first and the plain PyTorch op ("torch") last.
# "rand" (the custom mask before "bits") stays selectable, so runs that recorded it re-run and resume alike.
CPU_KERNELS = {
    "linear": ("onednn", "torch"),
    "dropout": ("bits", "rand", "torch"),
    "attention": ("math", "sdpa"),
}


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state_dict keys) whose forward goes through :func:`linear`."""

    onednn = True  # per instance: ``set_onednn_cpu_linear(module, False)`` restores F.linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias, self.onednn)


def set_onednn_cpu_linear(module: nn.Module, enabled: bool) -> None:
    """Switch every :class:`Linear` inside ``module`` between oneDNN (CPU fp32) and plain ``F.linear``."""
    set_cpu_kernels(module, linear="onednn" if enabled else "torch")


def set_cpu_kernels(
    module: nn.Module, linear: str | None = None, dropout: str | None = None, attention: str | None = None
) -> None:
    """Set each given switch (an option of ``CPU_KERNELS``) on every module inside ``module`` it applies to."""
    for name, value in (("linear", linear), ("dropout", dropout), ("attention", attention)):
        if value is not None and value not in CPU_KERNELS[name]:
            raise ValueError(f"kernels.{name}={value}: expected one of {', '.join(CPU_KERNELS[name])}")
    for m in module.modules():
        if linear is not None and isinstance(m, Linear):
            m.onednn = linear == "onednn"
        if dropout is not None and hasattr(m, "dropout_mask"):  # Dropout, and SelfAttention's spelled-out one
            m.dropout_mask = dropout
        if attention is not None and hasattr(m, "spelled_out_attention"):
            m.spelled_out_attention = attention == "math"


def cpu_kernels(module: nn.Module) -> dict[str, str]:
    """The switches as ``module`` has them now (the first module of each kind inside it decides)."""
    found: dict[str, str] = {}
    for m in module.modules():
        if isinstance(m, Linear):
            found.setdefault("linear", "onednn" if m.onednn else "torch")
        if isinstance(m, Dropout):
            found.setdefault("dropout", m.dropout_mask)
        if hasattr(m, "spelled_out_attention"):
            found.setdefault("attention", "math" if m.spelled_out_attention else "sdpa")
    return found


class _MaskDropout(torch.autograd.Function):
    """y = x · keep / (1 − p) with a boolean ``keep`` mask, saved for the backward (1 byte per element)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x * keep * scale

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad * keep * ctx.scale, None, None


def keep_mask(shape: torch.Size, p: float, kind: str) -> tuple[torch.Tensor, float]:
    """(boolean keep mask, the scale 1 / (1 − p) that keeps the expectation) for CPU dropout.

    ``bits``: four 16-bit draws from each 64-bit random integer, kept where ≥ p · 65,536 (p rounded to
    1/65,536, e.g. 0.1 → 0.100006; the scale uses the rounded p, so the expectation is exact); about twice as
    fast as ``rand`` and three to four times ``bernoulli_`` on 2-core EPYCs. ``rand``: ``torch.rand ≥ p``.
    """
    if kind == "rand":
        return torch.rand(shape) >= p, 1.0 / (1.0 - p)
    cut = round(p * 65536)
    n = math.prod(shape)
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
    keep = words.view(torch.int16)[:n] >= cut - 32768
    return keep.view(shape), 65536 / (65536 - cut)


def dropout(x: torch.Tensor, p: float, training: bool, mask: str = "bits") -> torch.Tensor:
    """``F.dropout``; on CPU with ``mask`` ``bits`` or ``rand`` the mask comes from :func:`keep_mask` (the
    same distribution, p rounded to 1/65,536 for ``bits``) instead of the ``bernoulli_`` behind
    ``F.dropout``, where dropout masks cost ~10 % of a small model's step."""
    if not training or p == 0.0:
        return x
    if mask == "torch" or x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    keep, scale = keep_mask(x.shape, p, mask)
    return _MaskDropout.apply(x, keep, scale)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (no parameters, same behaviour) through :func:`dropout`."""

    dropout_mask = "bits"  # per instance, set by set_cpu_kernels(module, dropout=...)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, self.dropout_mask)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None,
    dropout_p: float,
    is_causal: bool = False,
    spelled_out: bool = True,
    mask: str = "bits",
) -> torch.Tensor:
    """Scaled dot-product attention, [B, N, S, D] → [B, N, S, D]; ``attn_mask`` boolean (True = attend),
    ``is_causal`` (only without ``attn_mask``) as in SDPA.

    ``F.scaled_dot_product_attention``, except with attention dropout on CPU and ``spelled_out``: there SDPA
    falls back to its unfused math path anyway, so the same computation is spelled out here to use the
    faster dropout mask (``mask``: as :func:`dropout`).
    """
    if not spelled_out or dropout_p == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
        )
    scores = q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5)  # B,N,S,S
    if is_causal:
        attn_mask = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).tril()
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return dropout(scores.softmax(-1), dropout_p, True, mask) @ v


class _VocabCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy over [M, V] logits whose backward writes softmax − one-hot in one pass.

    Equal to ``F.cross_entropy(logits, targets, ignore_index=-100)``; ``F.cross_entropy``'s backward instead
    zero-fills an [M, V] gradient for the NLL step and then runs log-softmax's backward over it, two more
    passes over the largest tensor of an MLM step (M·V floats, e.g. 600 × 30,522).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        valid = targets != -100
        count = valid.sum().clamp_min(1)
        safe_targets = targets.clamp_min(0)[:, None]  # M,1
        lse = torch.logsumexp(logits, dim=-1)  # M
        nll = (lse - logits.gather(1, safe_targets).squeeze(1)) * valid
        ctx.save_for_backward(logits, safe_targets, lse, valid, count)
        return nll.sum() / count

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        logits, safe_targets, lse, valid, count = ctx.saved_tensors
        g = (logits - lse[:, None]).exp_()  # M,V softmax, exponentiated in place
        g.scatter_add_(1, safe_targets, torch.full_like(lse[:, None], -1.0))
        g.mul_((grad / count) * valid[:, None])
        return g, None


def vocab_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy(logits.float(), targets)`` for vocabulary-sized logits, with a leaner backward."""
    return _VocabCrossEntropy.apply(logits.float(), targets)
