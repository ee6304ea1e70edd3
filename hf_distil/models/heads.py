"""Run a language model in two halves: the encoder for every token, the LM head only at chosen rows.

The vocabulary projection is the largest matrix product of a small student (H × 30522 per token).
Running it only where a loss reads it (non-pad rows, or the masked rows with `restrict_ce_to_mask`)
gives the same numbers as full logits followed by selection, in less time and memory. With
`defer_projection` the projection is left to the loss, which runs it a block of rows at a time
(fused_linear.py), so that the rows' logits never exist whole.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

import torch
from torch import nn
from transformers.activations import gelu

from ..losses import LinearLogits


def _weight_and_bias(linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    return linear.weight, linear.bias


def _mobilebert_projection(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """MobileBERT's head projects with its decoder (embedding-sized) and an extra dense block stacked into one
    (V, H) matrix, as its own forward does."""
    head = model.cls.predictions
    return torch.cat([head.decoder.weight.t(), head.dense.weight], dim=0).t(), head.bias


# model_type → (encoder attribute, the head's transform up to its vocabulary projection, that projection's
# (weight (V, H), bias)). The head is linear(transform(hidden)), as in the model's own forward. Models not
# listed fall back to a full forward.
_SPLITS: dict[str, tuple[str, Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]], Callable]] = {
    "bert": ("bert", lambda m: m.cls.predictions.transform, lambda m: _weight_and_bias(m.cls.predictions.decoder)),
    "distilbert": (
        "distilbert",
        lambda m: lambda h: m.vocab_layer_norm(m.activation(m.vocab_transform(h))),
        lambda m: _weight_and_bias(m.vocab_projector),
    ),
    "roberta": (
        "roberta",
        lambda m: lambda h: m.lm_head.layer_norm(gelu(m.lm_head.dense(h))),
        lambda m: _weight_and_bias(m.lm_head.decoder),
    ),
    "mobilebert": ("mobilebert", lambda m: m.cls.predictions.transform, lambda m: _mobilebert_projection(m)),
}


def forward_arguments(model: nn.Module) -> set[str]:
    """Names the model's forward accepts (used to route token_type_ids to the teacher only).

    DDP and DeepSpeed wrappers take **kwargs: the wrapped module's signature is the one that counts.
    """
    return set(inspect.signature(getattr(model, "module", model).forward).parameters)


def model_inputs(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inputs `model` takes. Token types go only to a model with a token-type embedding (BERT): GPT-2's forward
    accepts `token_type_ids` too, but adds them through its word embeddings, shifting every token."""
    accepted = forward_arguments(model)
    if not getattr(getattr(getattr(model, "module", model), "config", None), "type_vocab_size", 0):
        accepted = accepted - {"token_type_ids"}
    return {
        k: v for k, v in inputs.items() if k in accepted and k in ("input_ids", "attention_mask", "token_type_ids")
    }


def is_fully_sharded(model: nn.Module) -> bool:
    """True for a model sharded by FSDP2's `fully_shard` (which turns its class into an `FSDPModule`)."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(getattr(model, "module", model), FSDPModule)


def is_partitioned(model: nn.Module) -> bool:
    """True under DeepSpeed ZeRO-3 (`ds_id` marks its weights) or FSDP2, where each process holds only a shard of
    every weight."""
    return is_fully_sharded(model) or any(hasattr(p, "ds_id") for p in model.parameters())


def can_split(model: nn.Module) -> bool:
    if is_partitioned(model):
        # Sharded weights are gathered by hooks around each module's own forward (FSDP2's on the top module, ZeRO-3's
        # on every module): the model's own forward must run, and the loss cannot read the head's weight directly.
        return False
    split = _SPLITS.get(getattr(getattr(model, "config", None), "model_type", None))
    return split is not None and hasattr(model, split[0]) and type(model).__name__.endswith("ForMaskedLM")


class LMOutputs(NamedTuple):
    hidden: torch.Tensor  # (B, L, H) last hidden state
    row_logits: torch.Tensor | LinearLogits  # (N, V) logits at the chosen rows, or their projection left undone
    full_logits: torch.Tensor | None  # (B, L, V) when the model's own forward ran, else None
    hidden_states: tuple[torch.Tensor, ...] | None  # embeddings + every layer, when asked for
    attentions: tuple[torch.Tensor, ...] | None  # (B, heads, L, L) per layer, when asked for
    scores: dict[int, torch.Tensor] | None = None  # (B, heads, L, L) pre-softmax, for the layers asked for (1-based)
    qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # one layer's Q, K, V, each (B, L, H)

    @property
    def attention_by_layer(self) -> dict[int, torch.Tensor]:
        """{layer (1-based): (B, heads, L, L)}: the pre-softmax scores when captured, else the attention maps."""
        return self.scores if self.scores is not None else dict(enumerate(self.attentions or (), start=1))


def hidden_and_row_logits(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    rows: torch.Tensor | None,
    split: bool,
    states: bool = False,
    maps: bool = False,
    score_layers: list[int] | None = None,
    qkv_layer: int | None = None,
    defer_projection: bool = False,
) -> LMOutputs:
    """Run `model`, with the LM head only at `rows` (B, L) bool when `split`; rows=None: no LM head at all (the
    encoder's states only; `split` then says the base model may run alone, see `can_encode_alone`).

    split=True runs the encoder and then the head at `rows` only (the model must pass `can_split`);
    split=False runs the model's own forward and selects rows from its full logits (needed when the model
    is wrapped by DDP or DeepSpeed, whose gradient hooks expect their own forward call).
    states / maps also return every layer's output / attention probabilities;
    score_layers, the pre-softmax attention scores of those layers (see `capture_attention_scores`);
    qkv_layer, that layer's query, key and value projections (1-based, see `capture_projections`).
    defer_projection (with split): row_logits is a `LinearLogits`, the head's transform applied and its
    vocabulary projection left to a loss that runs it chunk by chunk (fused_linear.py).
    """
    if score_layers or qkv_layer:
        layers = sorted({*(score_layers or ()), *([qkv_layer] if qkv_layer else ())})
        with capture_projections(model, layers) as projections:
            outputs = hidden_and_row_logits(
                model, inputs, rows, split, states, maps, defer_projection=defer_projection
            )
        kept, heads = projections(), attention_heads(model)
        return outputs._replace(
            scores={i: attention_scores(*kept[i][:2], heads) for i in score_layers} if score_layers else None,
            qkv=kept[qkv_layer] if qkv_layer else None,
        )
    extra = {"output_hidden_states": True} if states else {}
    if maps:
        extra["output_attentions"] = True
    if rows is None:  # no logits: the encoder alone, which needs no LM head (a bare AutoModel passes as it is)
        return _encoder_only(model, inputs, split, states, extra)
    if split:
        inner = model.module if hasattr(model, "module") else model
        encoder_name, transform, projection = _SPLITS[inner.config.model_type]
        encoder = getattr(inner, encoder_name)
        out = encoder(**model_inputs(encoder, inputs), return_dict=True, **extra)
        hidden = out.last_hidden_state
        features = transform(inner)(hidden[rows])
        row_logits = LinearLogits(features, *projection(inner))
        row_logits = row_logits if defer_projection else row_logits.logits()
        return LMOutputs(hidden, row_logits, None, out.hidden_states, out.attentions)
    out = model(**model_inputs(model, inputs), return_dict=True, **{**extra, "output_hidden_states": True})
    return LMOutputs(
        out.hidden_states[-1],
        out.logits[rows],
        out.logits,
        out.hidden_states if states else None,
        out.attentions,
    )


def _encoder_only(
    model: nn.Module, inputs: Mapping[str, torch.Tensor], alone: bool, states: bool, extra: dict
) -> LMOutputs:
    """The base model's outputs without the head: called directly when `alone` (an unwrapped, unsharded model),
    else through the model's own forward (DDP's and the sharding engines' hooks), whose logits are then dropped."""
    inner = getattr(model, "module", model)
    encoder = inner.base_model if alone else model
    if is_fully_sharded(encoder):
        _record_outputs_under_fsdp(getattr(encoder, "module", encoder))
    out = encoder(**model_inputs(encoder, inputs), return_dict=True, **{**extra, "output_hidden_states": True})
    return LMOutputs(out.hidden_states[-1], None, None, out.hidden_states if states else None, out.attentions)


def _record_outputs_under_fsdp(model: nn.Module) -> None:
    """FSDP2's `fully_shard` turns a model's class into an `FSDP<Class>` subclass, and transformers looks up which
    outputs a model records (hidden states, attentions) by its exact class (output_capturing's registry): a sharded
    bare encoder (an AutoModel such as BertModel, the top unit) would return no hidden states. Register the subclass
    under its model's entries."""
    from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY

    if not _CAN_RECORD_REGISTRY.get(model) and getattr(model, "_can_record_outputs", None):
        _CAN_RECORD_REGISTRY[model] = model._can_record_outputs


def can_encode_alone(model: nn.Module) -> bool:
    """Whether the base model under `model` can run by itself: not sharded (see `can_split`)."""
    return not is_partitioned(model)


# model_type → (layer list under the base model, (query, key, value) projections inside a layer).
_PROJECTIONS: dict[str, tuple[str, tuple[str, str, str]]] = {
    "bert": ("encoder.layer", ("attention.self.query", "attention.self.key", "attention.self.value")),
    "roberta": ("encoder.layer", ("attention.self.query", "attention.self.key", "attention.self.value")),
    "distilbert": ("transformer.layer", ("attention.q_lin", "attention.k_lin", "attention.v_lin")),
}


def has_attention_scores(model: nn.Module) -> bool:
    """Whether the hooks below know where the model's query, key and value projections are (BERT, RoBERTa,
    DistilBERT)."""
    return getattr(getattr(getattr(model, "module", model), "config", None), "model_type", None) in _PROJECTIONS


def attention_heads(model: nn.Module) -> int:
    """The model's attention heads (DistilBERT's config calls them n_heads), through DDP/DeepSpeed wrappers."""
    config = getattr(model, "module", model).config
    return getattr(config, "n_heads", None) or config.num_attention_heads


@contextlib.contextmanager
def capture_projections(
    model: nn.Module, layers: list[int]
) -> Iterator[Callable[[], dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]]:
    """Within the block, a forward of `model` keeps the outputs of the query, key and value projections of
    `layers` (1-based); the yielded function returns {layer: (Q, K, V)}, each (B, L, heads × head size).

    Forward hooks read them from the model's own pass: no recomputation, whatever the attention
    implementation (eager, SDPA), and gradients flow through the same graph as the layer's.
    """
    inner = getattr(model, "module", model)
    layer_list, names = _PROJECTIONS[inner.config.model_type]
    blocks = inner.base_model.get_submodule(layer_list)
    kept: dict[tuple[int, int], torch.Tensor] = {}
    handles = [
        blocks[i - 1]
        .get_submodule(name)
        .register_forward_hook(lambda _m, _a, out, at=(i, which): kept.__setitem__(at, out))
        for i in layers
        for which, name in enumerate(names)
    ]
    try:
        yield lambda: {i: (kept[(i, 0)], kept[(i, 1)], kept[(i, 2)]) for i in layers}
    finally:
        for handle in handles:
            handle.remove()


def attention_scores(query: torch.Tensor, key: torch.Tensor, heads: int) -> torch.Tensor:
    """Pre-softmax scores QKᵀ/√d, (B, heads, L, L), from projections (B, L, heads × d); padding not masked."""
    batch, length, width = query.shape
    q = query.view(batch, length, heads, width // heads).transpose(1, 2)
    k = key.view(batch, length, heads, width // heads).transpose(1, 2)
    return q @ k.transpose(-1, -2) * (width // heads) ** -0.5


@contextlib.contextmanager
def capture_attention_scores(model: nn.Module, layers: list[int]) -> Iterator[Callable[[], dict[int, torch.Tensor]]]:
    """Within the block, a forward of `model` keeps the query and key projections of `layers` (1-based);
    the yielded function turns them into pre-softmax scores QKᵀ/√d, (B, heads, L, L), padding not masked.

    No attention implementation returns scores (eager returns probabilities, SDPA nothing): they are
    rebuilt from the projections that `capture_projections` reads from the model's own pass.
    """
    heads = attention_heads(model)
    with capture_projections(model, layers) as projections:
        yield lambda: {i: attention_scores(q, k, heads) for i, (q, k, _) in projections().items()}
