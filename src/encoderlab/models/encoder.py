"""A BERT-style Transformer encoder in one readable file.

Config dataclass first, then the blocks bottom-up (embeddings → attention → feed-forward → layer → encoder),
then the builder and the size presets. No decoder paths, no inference cache.

Parameter names follow Hugging Face BERT's structure closely enough that checkpoints map by an explicit
table (see ``encoderlab.formats.hf``); they never change between releases or with ``torch.compile``.

Shapes: B = batch, S = sequence length, H = hidden size, N = heads, D = H // N, I = intermediate size,
E = embedding size (H unless ``embedding_size``), M = number of selected output positions (``output_positions``).

Block options (the config fields after ``norm_first``; docs/pretraining.md, "Encoder blocks"): rotary
positions, a GeGLU feed-forward, no biases, the final and first norms, local/global attention, causal
attention, narrow embeddings with a projection, a position offset and no segment table — RoBERTa,
DistilBERT, ELECTRA and ModernBERT expressed with BERT's parameter names. Every default is BERT's block.

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
from encoderlab.validate import (
    at_least,
    below,
    boolean,
    check,
    check_all,
    divides,
    one_of,
    only_with,
    positive,
    probability,
)

POSITIONS = ("learned", "rope")
FEED_FORWARDS = ("gelu", "geglu")
ATTENTIONS = ("bidirectional", "causal")


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
    # Block options (docs/pretraining.md, "Encoder blocks"). Every default is BERT's block; a config saved
    # before they existed loads with these defaults and rebuilds the same model.
    position: str = "learned"  # "rope": rotary queries and keys in every layer, no position table
    rope_theta: float = 10000.0
    local_rope_theta: float | None = None  # theta of the local-attention layers; None → rope_theta
    ffn: str = "gelu"  # "geglu": intermediate → 2·I, split (input, gate), gelu(input) · gate
    bias: bool = True  # False: no bias in any Linear or LayerNorm of the encoder
    final_norm: bool | None = None  # a LayerNorm after the last layer; None → norm_first
    first_attention_norm: bool = True  # False: layer 0's pre-attention norm is the identity
    local_window: int | None = None  # local layers attend to |i − j| ≤ local_window // 2; None: all global
    global_every: int = 1  # layer i is global when i % global_every == 0
    attention: str = "bidirectional"  # "causal": position t attends to positions ≤ t only
    embedding_size: int | None = None  # None → hidden; otherwise embeddings this wide, projected to hidden
    position_offset: int = 0  # learned positions are rows arange(S) + position_offset (RoBERTa: 2)

    def __post_init__(self) -> None:
        if self.hidden % self.heads != 0:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        for name, choices in (("position", POSITIONS), ("ffn", FEED_FORWARDS), ("attention", ATTENTIONS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, not {getattr(self, name)!r}")
        # Unset sizes and switches take the value they stand for, so a saved config spells out the model.
        implied = {
            "intermediate": 4 * self.hidden,
            "embedding_size": self.hidden,
            "final_norm": self.norm_first,
            "local_rope_theta": self.rope_theta,
        }
        for name, value in implied.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

    @property
    def max_sequence_length(self) -> int:
        """The longest input: position rows left after the offset."""
        return self.max_positions - self.position_offset

    def is_local(self, layer: int) -> bool:
        """Whether layer ``layer`` (0-based) attends within the local window (ModernBERT's alternation)."""
        return self.local_window is not None and layer % self.global_every != 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> EncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown encoder config keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)


Rotary = tuple[torch.Tensor, torch.Tensor]  # RoPE's (cos, sin), each [S, D]


def select_positions(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[B, S, ...] → [M, ...]: a boolean [B, S] mask selects its True positions (row-major, as ``x[mask]``);
    a LongTensor [B, K] of indices gathers K positions per row (static shapes, no host sync), M = B·K."""
    if positions.dtype == torch.bool:
        return x[positions]
    index = positions.reshape(*positions.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return x.gather(1, index).flatten(0, 1)


class Embeddings(nn.Module):
    """Token + learned position + segment embeddings, then LayerNorm and dropout.

    Without a position table (``position="rope"``: positions enter in attention) or a segment table
    (``type_vocab_size=0``) that term is left out. Embeddings narrower than the hidden size
    (``embedding_size``) are projected up after the dropout, as ELECTRA's ``embeddings_project``.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        width = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, width, padding_idx=config.pad_token_id)
        self.position_embeddings = None
        if config.position == "learned":
            self.position_embeddings = nn.Embedding(config.max_positions, width)
            # A buffer, not recomputed each step; non-persistent so it never appears in checkpoints.
            positions = torch.arange(config.position_offset, config.max_positions)
            self.register_buffer("position_ids", positions, persistent=False)
        self.token_type_embeddings = (
            nn.Embedding(config.type_vocab_size, width) if config.type_vocab_size > 0 else None
        )
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps, bias=config.bias)
        self.dropout = Dropout(config.dropout)
        self.projection = Linear(width, config.hidden, bias=config.bias) if width != config.hidden else None

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        seq_len = input_ids.shape[1]
        x = self.word_embeddings(input_ids)  # B,S,E
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(self.position_ids[:seq_len])[None]
        # Without a segment table (DistilBERT, ModernBERT) token_type_ids are ignored.
        if self.token_type_embeddings is not None and token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        elif self.token_type_embeddings is not None:
            x = x + self.token_type_embeddings(token_type_ids)
        x = self.dropout(self.LayerNorm(x))
        return x if self.projection is None else self.projection(x)  # B,S,H


def rotary_tables(seq_len: int, head_dim: int, theta: float, device: torch.device) -> Rotary:
    """RoPE's cos and sin, each [S, D] in fp32: position p turns the pair (d, d + D/2) of every head by
    p · theta^(−2d/D) (Hugging Face's non-interleaved ``rotate_half`` layout, as ModernBERT and Llama)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim  # D/2
    inverse_frequency = 1.0 / (theta**exponents)
    positions = torch.arange(seq_len, dtype=torch.float32, device=device)
    angles = positions[:, None] * inverse_frequency[None]  # S,D/2
    angles = torch.cat([angles, angles], dim=-1)  # S,D
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, rotary: Rotary) -> torch.Tensor:
    """Queries or keys [B, N, S, D] turned by their positions; in fp32 (as Hugging Face), back in x's dtype."""
    cos, sin = rotary
    x32 = x.float()
    half = x.shape[-1] // 2
    turned = torch.cat([-x32[..., half:], x32[..., :half]], dim=-1)  # rotate_half
    return (x32 * cos + turned * sin).to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` (fused kernels where available)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.query = Linear(config.hidden, config.hidden, bias=config.bias)
        self.key = Linear(config.hidden, config.hidden, bias=config.bias)
        self.value = Linear(config.hidden, config.hidden, bias=config.bias)
        self.output = Linear(config.hidden, config.hidden, bias=config.bias)
        self.attention_dropout = config.attention_dropout
        self.spelled_out_attention = True  # CPU with attention dropout: kernels.attention=math|sdpa
        self.dropout_mask = "bits"  # the spelled-out attention's dropout mask: kernels.dropout

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None,
        keep: torch.Tensor | None = None,
        rotary: Rotary | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        """``attn_mask``: boolean, True = attend, broadcast to [B, N, S, S]; ``rotary``: RoPE's (cos, sin);
        ``causal``: attend to earlier positions only (given only where ``attn_mask`` is None)."""
        b, s, h = x.shape
        projections = (self.query, self.key, self.value)
        if all(isinstance(m, Linear) for m in projections):
            # One matmul for q, k and v: the three weights concatenated (cheap, H×3H), parameters unchanged.
            weight = torch.cat([m.weight for m in projections])  # 3H,H
            bias = None if self.query.bias is None else torch.cat([m.bias for m in projections])
            qkv = linear(x, weight, bias, self.query.onednn)  # B,S,3H
        else:  # a wrapped projection (e.g. a LoRA adapter) must run its own forward
            qkv = torch.cat([m(x) for m in projections], dim=-1)  # B,S,3H
        # B,S,3H → 3 × B,N,S,D
        q, k, v = qkv.view(b, s, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        if rotary is not None:  # on every query: positions are selected (keep) only after attention
            q, k = rotate(q, rotary), rotate(k, rotary)
        dropout = self.attention_dropout if self.training else 0.0
        y = attention(q, k, v, attn_mask, dropout, causal, self.spelled_out_attention, self.dropout_mask)
        y = y.transpose(1, 2).reshape(b, s, h)  # B,S,H
        if keep is not None:
            y = select_positions(y, keep)  # M,H
        return self.output(y)


class Layer(nn.Module):
    """Post-LayerNorm Transformer layer, as in BERT: x = LN(x + Attn(x)); x = LN(x + FFN(x)).

    With ``norm_first``: x = x + Attn(LN(x)); x = x + FFN(LN(x)) (same modules, same parameter names).
    The feed-forward is GELU(x W1) W2, or with ``ffn="geglu"`` (GELU(x Wa) · x Wg) W2, Wa and Wg being the
    two halves of one ``intermediate`` projection (ModernBERT's Wi).
    """

    def __init__(self, config: EncoderConfig, index: int) -> None:
        super().__init__()
        self.attention = SelfAttention(config)
        # ModernBERT's layer 0 takes the embeddings' LayerNorm as its pre-attention norm.
        first_without_norm = index == 0 and not config.first_attention_norm
        self.attention_norm = (
            nn.Identity()
            if first_without_norm
            else nn.LayerNorm(config.hidden, eps=config.layer_norm_eps, bias=config.bias)
        )
        self.gated = config.ffn == "geglu"
        width = 2 * config.intermediate if self.gated else config.intermediate
        self.intermediate = Linear(config.hidden, width, bias=config.bias)
        self.output = Linear(config.intermediate, config.hidden, bias=config.bias)
        self.output_norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps, bias=config.bias)
        self.dropout = Dropout(config.dropout)
        self.norm_first = config.norm_first
        self.local = config.is_local(index)  # which of the encoder's masks and rotary tables it takes

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        # Exact (erf) GELU, as BERT, ModernBERT and Hugging Face's "gelu".
        if self.gated:
            value, gate = self.intermediate(x).chunk(2, dim=-1)  # 2 × *,I
            return self.dropout(self.output(F.gelu(value) * gate))
        return self.dropout(self.output(F.gelu(self.intermediate(x))))

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None,
        keep: torch.Tensor | None = None,
        rotary: Rotary | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        """[B, S, H] → [B, S, H]; with ``keep`` (see ``Encoder.forward``'s ``output_positions``) → [M, H]:
        keys and values still come from every position, everything after attention runs on M rows."""
        if self.norm_first:
            a = self.attention(self.attention_norm(x), attn_mask, keep, rotary, causal)
            if keep is not None:
                x = select_positions(x, keep)  # M,H
            x = x + self.dropout(a)
            return x + self._feed_forward(self.output_norm(x))
        a = self.attention(x, attn_mask, keep, rotary, causal)
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
        learned = config.position == "learned"
        if position_init == "sinusoidal":
            check("encoder.position_init", position_init, only_with(learned, "encoder.position=learned"))
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config, i) for i in range(config.layers))
        # Pre-LN layers leave the residual stream un-normalised: one LayerNorm at the end (as in GPT-2).
        self.final_norm = (
            nn.LayerNorm(config.hidden, eps=config.layer_norm_eps, bias=config.bias)
            if config.final_norm
            else None
        )
        self.apply(self._init_weights)
        if position_init == "sinusoidal":
            self._init_positions_sinusoidal()
        self.onednn_cpu_linear = onednn_cpu_linear  # heads built on this encoder follow it
        set_onednn_cpu_linear(self, onednn_cpu_linear)
        # The pooling the weights' source makes its sentence vectors with, when it records one (a
        # sentence-transformers model: all-MiniLM-L6-v2 means); set by the init source, read by vector heads.
        self.source_pooling: str | None = None
        self.source_normalize = False  # and whether its vectors are scaled to unit length

    def _init_weights(self, module: nn.Module) -> None:
        # BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm.
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            if module.bias is not None:
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
        seq_len = input_ids.shape[1]
        if seq_len > self.config.max_sequence_length:
            offset = self.config.position_offset
            rows = f"max_positions {self.config.max_positions}" + (
                f" less position_offset {offset}" if offset else ""
            )
            raise ValueError(f"sequence length {seq_len} exceeds {rows}")
        x = self.embeddings(input_ids, token_type_ids)  # B,S,H
        # Masks and rotary tables once per forward, one per kind of layer (global / local), not per layer.
        kinds = {layer.local for layer in self.layers}
        masks = {local: self._attention_mask(attention_mask, seq_len, local, x.device) for local in kinds}
        rotary = {local: self._rotary(seq_len, local, x.device) for local in kinds}
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            attn_mask, causal = masks[layer.local]
            x = layer(x, attn_mask, output_positions if i == last else None, rotary[layer.local], causal)
        return x if self.final_norm is None else self.final_norm(x)

    def _attention_mask(
        self, attention_mask: torch.Tensor | None, seq_len: int, local: bool, device: torch.device
    ) -> tuple[torch.Tensor | None, bool]:
        """(boolean mask, True = attend, or None; whether SDPA applies causality itself) for a layer kind.

        Without padding and local window no mask lets SDPA pick its fastest kernel (``is_causal`` for a
        causal encoder); otherwise padding, window and causality are one [B|1, 1, S, S] boolean mask.
        """
        padding = None
        if attention_mask is not None and not bool(attention_mask.all()):
            padding = attention_mask[:, None, None, :].bool()  # B,1,1,S
        causal = self.config.attention == "causal"
        if not local and (padding is None or not causal):
            return padding, causal and padding is None
        position = torch.arange(seq_len, device=device)
        offset = position[None, :] - position[:, None]  # S,S: key j − query i
        allowed = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device)
        if local:
            allowed = offset.abs() <= self.config.local_window // 2  # ModernBERT's window
        if causal:
            allowed = allowed & (offset <= 0)
        if padding is None:
            return allowed, False
        # A padded query may have no real key left in its window; attending to itself keeps its row finite
        # (real rows are unchanged: their own position is real, in the window and not in the future).
        return (padding & allowed) | torch.eye(seq_len, dtype=torch.bool, device=device), False

    def _rotary(self, seq_len: int, local: bool, device: torch.device) -> Rotary | None:
        if self.config.position != "rope":
            return None
        theta = self.config.local_rope_theta if local else self.config.rope_theta
        return rotary_tables(seq_len, self.config.hidden // self.config.heads, theta, device)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def check_settings(**values) -> None:
    """The ``encoder=`` group's values, each against its rules, then the rules between them (``heads`` must
    divide ``hidden``, ``first_attention_norm=false`` needs ``norm_first``, RoPE needs an even head size)."""
    check("encoder.hidden", values["hidden"], at_least(1))
    rules = {
        "layers": (at_least(1),),
        "heads": (at_least(1), divides(values["hidden"], "encoder.hidden")),
        "intermediate": (at_least(1),),
        "max_positions": (at_least(1),),
        "type_vocab_size": (at_least(0),),
        "dropout": (probability,),
        "attention_dropout": (probability,),
        "layer_norm_eps": (positive,),
        "norm_first": (boolean,),
        "onednn_cpu_linear": (boolean,),
        "position": (one_of(*POSITIONS),),
        "rope_theta": (positive,),
        "local_rope_theta": (positive,),
        "ffn": (one_of(*FEED_FORWARDS),),
        "bias": (boolean,),
        "final_norm": (boolean,),
        "first_attention_norm": (boolean,),
        "local_window": (at_least(1),),
        "global_every": (at_least(1),),
        "attention": (one_of(*ATTENTIONS),),
        "embedding_size": (at_least(1),),
        "position_offset": (at_least(0),),
    }
    nullable = ("intermediate", "local_rope_theta", "final_norm", "local_window", "embedding_size")
    check_all("encoder", values, rules, optional=nullable)
    rows = values["max_positions"]
    check("encoder.position_offset", values["position_offset"], below(rows, f"encoder.max_positions={rows}"))
    if not values["first_attention_norm"]:
        norm_first = only_with(values["norm_first"], "encoder.norm_first=true")
        check("encoder.first_attention_norm", False, norm_first)
    if values["position"] == "rope":
        head_size = values["hidden"] // values["heads"]
        even = only_with(
            head_size % 2 == 0, f"an even head size (encoder.hidden / encoder.heads = {head_size})"
        )
        check("encoder.position", "rope", even)


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
    position: str = "learned",
    rope_theta: float = 10000.0,
    local_rope_theta: float | None = None,
    ffn: str = "gelu",
    bias: bool = True,
    final_norm: bool | None = None,
    first_attention_norm: bool = True,
    local_window: int | None = None,
    global_every: int = 1,
    attention: str = "bidirectional",
    embedding_size: int | None = None,
    position_offset: int = 0,
    onednn_cpu_linear: bool = True,
    position_init: str = "normal",
) -> Encoder:
    """The one encoder builder; presets and configs only fill in its numbers.

    The block options (``position`` … ``position_offset``) are described on ``EncoderConfig`` and in
    docs/pretraining.md ("Encoder blocks"); their defaults give BERT's block.
    ``onednn_cpu_linear`` is a run-time choice, not part of the saved config: CPU fp32 matmuls on oneDNN.
    ``position_init`` (``normal`` as in BERT, or ``sinusoidal``) only decides the starting weights, so it
    is not saved either. Every value is checked here, under the ``encoder.*`` key that sets it.
    """
    block = {
        "position": position,
        "rope_theta": rope_theta,
        "local_rope_theta": local_rope_theta,
        "ffn": ffn,
        "bias": bias,
        "final_norm": final_norm,
        "first_attention_norm": first_attention_norm,
        "local_window": local_window,
        "global_every": global_every,
        "attention": attention,
        "embedding_size": embedding_size,
        "position_offset": position_offset,
    }
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
        **block,
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
            **block,
        ),
        onednn_cpu_linear=onednn_cpu_linear,
        position_init=position_init,
    )


# ModernBERT's block (Warner et al. 2024): pre-LN with a final norm and none before layer 0's attention,
# RoPE, GeGLU, no biases, local attention (128 tokens) in two of every three layers.
MODERN_BLOCK: dict[str, object] = {
    "norm_first": True,
    "final_norm": True,
    "position": "rope",
    "ffn": "geglu",
    "bias": False,
    "first_attention_norm": False,
    "layer_norm_eps": 1e-5,
    "local_window": 128,
    "global_every": 3,
    "rope_theta": 160000.0,
    "local_rope_theta": 10000.0,
    "type_vocab_size": 0,
}

# The Turc et al. (2019) compact-BERT shapes; heads = hidden / 64. The modern_* family puts ModernBERT's
# block on the tiny and mini widths, its GeGLU width ≈ 8H/3 (rounded to a multiple of 64) so that the
# feed-forward has about BERT's 8H² parameters, and ModernBERT-base's own shape.
PRESETS: dict[str, dict[str, object]] = {
    "tiny": {"layers": 2, "hidden": 128, "heads": 2},
    "mini": {"layers": 4, "hidden": 256, "heads": 4},
    "small": {"layers": 4, "hidden": 512, "heads": 8},
    "medium": {"layers": 8, "hidden": 512, "heads": 8},
    "base": {"layers": 12, "hidden": 768, "heads": 12},
    "modern_tiny": {"layers": 2, "hidden": 128, "heads": 2, "intermediate": 320, **MODERN_BLOCK},
    "modern_mini": {"layers": 4, "hidden": 256, "heads": 4, "intermediate": 704, **MODERN_BLOCK},
    "modern_base": {
        "layers": 22,
        "hidden": 768,
        "heads": 12,
        "intermediate": 1152,
        "max_positions": 8192,
        **MODERN_BLOCK,
    },
}


def from_preset(name: str, vocab_size: int, **overrides) -> Encoder:
    if name not in PRESETS:
        raise ValueError(f"unknown encoder preset {name!r}; choose one of {sorted(PRESETS)}")
    return build(vocab_size=vocab_size, **{**PRESETS[name], **overrides})


def attention_flops_per_token(config: EncoderConfig, seq_len: int) -> int:
    """Training FLOPs per token spent in attention scores/values (not in parameters): 12·L·S·H. Local and
    causal layers count in full: their masked scores are computed too (a boolean mask to SDPA)."""
    return 12 * config.layers * seq_len * config.hidden
