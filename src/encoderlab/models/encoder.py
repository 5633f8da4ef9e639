"""A BERT-style Transformer encoder in one readable file.

Config dataclass first, then the blocks bottom-up (embeddings → attention → feed-forward → layer → encoder),
then the builder and the size presets. No decoder paths, no inference cache.

Parameter names follow Hugging Face BERT's structure closely enough that checkpoints map by an explicit
table (see ``encoderlab.formats.hf``); they never change between releases or with ``torch.compile``.

Shapes: B = batch, S = sequence length, H = hidden size, N = heads, D = H // N, I = intermediate size,
M = number of selected output positions (``output_positions``).

Speed (each on by default, each with a test that it matches the plain path within float tolerance; the
custom CPU kernels live in ``encoderlab.models.kernels``):
- ``output_positions``: the last layer runs its attention-output projection and feed-forward only where the
  caller needs hidden states (the masked positions of an MLM batch), about 16 % of the encoder's FLOPs.
- query, key and value are one matrix multiplication (their weights concatenated on the fly, names unchanged).
- ``Linear``: on CPU in fp32, matrix multiplications run on oneDNN instead of the BLAS behind ``F.linear``,
  about 2x faster on some x86 CPUs (``onednn_cpu_linear=False`` restores the plain path).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.models.kernels import Dropout, Linear, attention, linear, set_onednn_cpu_linear
from encoderlab.validate import at_least, boolean, check, check_all, divides, one_of, positive, probability


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int
    layers: int = 4
    hidden: int = 256
    heads: int = 4
    intermediate: int | None = None  # None → 4 × hidden, as in BERT
    max_positions: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02
    # False: BERT's post-LayerNorm layers. True: pre-LayerNorm layers plus a final LayerNorm, which train
    # stably at higher learning rates and leave the MLM loss plateau sooner on short budgets (cramming).
    norm_first: bool = False

    def __post_init__(self) -> None:
        if self.hidden % self.heads != 0:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.intermediate is None:
            object.__setattr__(self, "intermediate", 4 * self.hidden)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> EncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown encoder config keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)


def select_positions(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[B, S, ...] → [M, ...]: a boolean [B, S] mask selects its True positions (row-major, as ``x[mask]``);
    a LongTensor [B, K] of indices gathers K positions per row (static shapes, no host sync), M = B·K."""
    if positions.dtype == torch.bool:
        return x[positions]
    index = positions.reshape(*positions.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return x.gather(1, index).flatten(0, 1)


class Embeddings(nn.Module):
    """Token + learned position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_positions, config.hidden)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden)
        self.LayerNorm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.dropout)
        # A buffer, not recomputed each step; non-persistent so it never appears in checkpoints.
        self.register_buffer("position_ids", torch.arange(config.max_positions), persistent=False)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        seq_len = input_ids.shape[1]
        x = self.word_embeddings(input_ids)  # B,S,H
        x = x + self.position_embeddings(self.position_ids[:seq_len])[None]
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` (fused kernels where available)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.query = Linear(config.hidden, config.hidden)
        self.key = Linear(config.hidden, config.hidden)
        self.value = Linear(config.hidden, config.hidden)
        self.output = Linear(config.hidden, config.hidden)
        self.attention_dropout = config.attention_dropout

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, s, h = x.shape
        projections = (self.query, self.key, self.value)
        if all(isinstance(m, Linear) for m in projections):
            # One matmul for q, k and v: the three weights concatenated (cheap, H×3H), parameters unchanged.
            weight = torch.cat([m.weight for m in projections])  # 3H,H
            bias = torch.cat([m.bias for m in projections])
            qkv = linear(x, weight, bias, self.query.onednn)  # B,S,3H
        else:  # a wrapped projection (e.g. a LoRA adapter) must run its own forward
            qkv = torch.cat([m(x) for m in projections], dim=-1)  # B,S,3H
        # B,S,3H → 3 × B,N,S,D
        q, k, v = qkv.view(b, s, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        dropout = self.attention_dropout if self.training else 0.0
        y = attention(q, k, v, attn_mask, dropout)  # B,N,S,D
        y = y.transpose(1, 2).reshape(b, s, h)  # B,S,H
        if keep is not None:
            y = select_positions(y, keep)  # M,H
        return self.output(y)


class Layer(nn.Module):
    """Post-LayerNorm Transformer layer, as in BERT: x = LN(x + Attn(x)); x = LN(x + FFN(x)).

    With ``norm_first``: x = x + Attn(LN(x)); x = x + FFN(LN(x)) (same modules, same parameter names).
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.intermediate = Linear(config.hidden, config.intermediate)
        self.output = Linear(config.intermediate, config.hidden)
        self.output_norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.dropout)
        self.norm_first = config.norm_first

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        # Exact (erf) GELU, as BERT and Hugging Face's "gelu".
        return self.dropout(self.output(F.gelu(self.intermediate(x))))

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, S, H] → [B, S, H]; with ``keep`` (see ``Encoder.forward``'s ``output_positions``) → [M, H]:
        keys and values still come from every position, everything after attention runs on M rows."""
        if self.norm_first:
            a = self.attention(self.attention_norm(x), attn_mask, keep)
            if keep is not None:
                x = select_positions(x, keep)  # M,H
            x = x + self.dropout(a)
            return x + self._feed_forward(self.output_norm(x))
        a = self.attention(x, attn_mask, keep)
        if keep is not None:
            x = select_positions(x, keep)  # M,H
        x = self.attention_norm(x + self.dropout(a))
        return self.output_norm(x + self._feed_forward(x))


class Encoder(nn.Module):
    """Token ids → contextual hidden states [B, S, H]."""

    POSITION_INITS = ("normal", "sinusoidal")

    def __init__(
        self, config: EncoderConfig, onednn_cpu_linear: bool = True, position_init: str = "normal"
    ) -> None:
        super().__init__()
        check("encoder.position_init", position_init, one_of(*self.POSITION_INITS))
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.layers))
        # Pre-LN layers leave the residual stream un-normalised: one LayerNorm at the end (as in GPT-2).
        self.final_norm = (
            nn.LayerNorm(config.hidden, eps=config.layer_norm_eps) if config.norm_first else None
        )
        self.apply(self._init_weights)
        if position_init == "sinusoidal":
            self._init_positions_sinusoidal()
        self.onednn_cpu_linear = onednn_cpu_linear  # heads built on this encoder follow it
        set_onednn_cpu_linear(self, onednn_cpu_linear)

    def _init_weights(self, module: nn.Module) -> None:
        # BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm.
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @torch.no_grad()
    def _init_positions_sinusoidal(self) -> None:
        """Start the learned position table from Transformer sinusoids, rescaled to the normal init's RMS.

        Neighbouring positions then start out similar, so attention to nearby tokens is easy to learn from
        step one; a small encoder leaves MLM's early plateau thousands of steps sooner (docs/pretraining.md).
        The table stays an ordinary learned embedding: same parameters, same export.
        """
        table = self.embeddings.position_embeddings.weight
        n, h = table.shape
        position = torch.arange(n, dtype=torch.float32)[:, None]
        frequency = torch.exp(torch.arange(0, h, 2, dtype=torch.float32) * (-math.log(10000.0) / h))
        sinusoids = torch.zeros(n, h)
        sinusoids[:, 0::2] = torch.sin(position * frequency)
        sinusoids[:, 1::2] = torch.cos(position * frequency[: h // 2])
        table.copy_(sinusoids * (self.config.initializer_range / sinusoids.pow(2).mean().sqrt()))

    @property
    def hidden_size(self) -> int:
        return self.config.hidden

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states [B, S, H], or [M, H] at ``output_positions`` only.

        ``output_positions`` (optional) is a boolean [B, S] mask or a LongTensor [B, K] of indices; the result
        equals ``select_positions(forward(...), output_positions)`` but the last layer does its attention-output
        projection and feed-forward only at those positions (MLM needs hidden states only where it predicts).
        """
        if input_ids.shape[1] > self.config.max_positions:
            raise ValueError(
                f"sequence length {input_ids.shape[1]} exceeds max_positions {self.config.max_positions}"
            )
        x = self.embeddings(input_ids, token_type_ids)  # B,S,H
        attn_mask = None
        # Without padding, no mask lets SDPA pick its fastest kernel.
        if attention_mask is not None and not bool(attention_mask.all()):
            attn_mask = attention_mask[:, None, None, :].bool()  # B,1,1,S: True = attend
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, attn_mask, output_positions if i == last else None)
        return x if self.final_norm is None else self.final_norm(x)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def check_settings(**values) -> None:
    """The ``encoder=`` group's values, each against its rules (``heads`` must also divide ``hidden``)."""
    check("encoder.hidden", values["hidden"], at_least(1))
    rules = {
        "layers": (at_least(1),),
        "heads": (at_least(1), divides(values["hidden"], "encoder.hidden")),
        "intermediate": (at_least(1),),
        "max_positions": (at_least(1),),
        "type_vocab_size": (at_least(1),),
        "dropout": (probability,),
        "attention_dropout": (probability,),
        "layer_norm_eps": (positive,),
        "norm_first": (boolean,),
        "onednn_cpu_linear": (boolean,),
    }
    check_all("encoder", values, rules, optional=("intermediate",))


def build(
    vocab_size: int,
    layers: int = 4,
    hidden: int = 256,
    heads: int = 4,
    intermediate: int | None = None,
    max_positions: int = 512,
    type_vocab_size: int = 2,
    dropout: float = 0.1,
    attention_dropout: float = 0.1,
    layer_norm_eps: float = 1e-12,
    pad_token_id: int = 0,
    norm_first: bool = False,
    onednn_cpu_linear: bool = True,
    position_init: str = "normal",
) -> Encoder:
    """The one encoder builder; presets and configs only fill in its numbers.

    ``onednn_cpu_linear`` is a run-time choice, not part of the saved config: CPU fp32 matmuls on oneDNN.
    ``position_init`` (``normal`` as in BERT, or ``sinusoidal``) only decides the starting weights, so it
    is not saved either. Every value is checked here, under the ``encoder.*`` key that sets it.
    """
    check_settings(
        layers=layers,
        hidden=hidden,
        heads=heads,
        intermediate=intermediate,
        max_positions=max_positions,
        type_vocab_size=type_vocab_size,
        dropout=dropout,
        attention_dropout=attention_dropout,
        layer_norm_eps=layer_norm_eps,
        norm_first=norm_first,
        onednn_cpu_linear=onednn_cpu_linear,
    )
    return Encoder(
        EncoderConfig(
            vocab_size=vocab_size,
            layers=layers,
            hidden=hidden,
            heads=heads,
            intermediate=intermediate,
            max_positions=max_positions,
            type_vocab_size=type_vocab_size,
            dropout=dropout,
            attention_dropout=attention_dropout,
            layer_norm_eps=layer_norm_eps,
            pad_token_id=pad_token_id,
            norm_first=norm_first,
        ),
        onednn_cpu_linear=onednn_cpu_linear,
        position_init=position_init,
    )


# The Turc et al. (2019) compact-BERT shapes; heads = hidden / 64.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"layers": 2, "hidden": 128, "heads": 2},
    "mini": {"layers": 4, "hidden": 256, "heads": 4},
    "small": {"layers": 4, "hidden": 512, "heads": 8},
    "medium": {"layers": 8, "hidden": 512, "heads": 8},
    "base": {"layers": 12, "hidden": 768, "heads": 12},
}


def from_preset(name: str, vocab_size: int, **overrides) -> Encoder:
    if name not in PRESETS:
        raise ValueError(f"unknown encoder preset {name!r}; choose one of {sorted(PRESETS)}")
    return build(vocab_size=vocab_size, **{**PRESETS[name], **overrides})


def attention_flops_per_token(config: EncoderConfig, seq_len: int) -> int:
    """Training FLOPs per token spent in attention scores/values (not in parameters): 12·L·S·H."""
    return 12 * config.layers * seq_len * config.hidden
