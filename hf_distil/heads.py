"""Run a language model in two halves: the encoder for every token, the LM head only at chosen rows.

The vocabulary projection is the largest matrix product of a small student (H × 30522 per token).
Running it only where a loss reads it (non-pad rows, or the masked rows with `restrict_ce_to_mask`)
gives the same numbers as full logits followed by selection, in less time and memory.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

import torch
from torch import nn


def _distilbert_head(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda h: model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(h))))


# model_type → (encoder attribute, head builder). Models not listed fall back to a full forward.
_SPLITS: dict[str, tuple[str, Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]]] = {
    "bert": ("bert", lambda m: m.cls),
    "distilbert": ("distilbert", _distilbert_head),
    "roberta": ("roberta", lambda m: m.lm_head),
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


def can_split(model: nn.Module) -> bool:
    if is_fully_sharded(model):
        # The hooks on the top module gather the weights it holds itself (embeddings, LM head): its own forward
        # must run, or the encoder meets them still sharded.
        return False
    split = _SPLITS.get(getattr(getattr(model, "config", None), "model_type", None))
    return split is not None and hasattr(model, split[0]) and type(model).__name__.endswith("ForMaskedLM")


class LMOutputs(NamedTuple):
    hidden: torch.Tensor  # (B, L, H) last hidden state
    row_logits: torch.Tensor  # (N, V) logits at the chosen rows
    full_logits: torch.Tensor | None  # (B, L, V) when the model's own forward ran, else None
    hidden_states: tuple[torch.Tensor, ...] | None  # embeddings + every layer, when asked for
    attentions: tuple[torch.Tensor, ...] | None  # (B, heads, L, L) per layer, when asked for
    scores: dict[int, torch.Tensor] | None = None  # (B, heads, L, L) pre-softmax, for the layers asked for (1-based)

    @property
    def attention_by_layer(self) -> dict[int, torch.Tensor]:
        """{layer (1-based): (B, heads, L, L)}: the pre-softmax scores when captured, else the attention maps."""
        return self.scores if self.scores is not None else dict(enumerate(self.attentions or (), start=1))


def hidden_and_row_logits(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    rows: torch.Tensor,
    split: bool,
    all_hidden_states: bool = False,
    attentions: bool = False,
    score_layers: list[int] | None = None,
) -> LMOutputs:
    """Run `model`, with the LM head only at `rows` (B, L) bool when `split`.

    split=True runs the encoder and then the head at `rows` only (the model must pass `can_split`);
    split=False runs the model's own forward and selects rows from its full logits (needed when the model
    is wrapped by DDP or DeepSpeed, whose gradient hooks expect their own forward call).
    all_hidden_states / attentions also return every layer's output / attention probabilities;
    score_layers, the pre-softmax attention scores of those layers (see `capture_attention_scores`).
    """
    if score_layers:
        with capture_attention_scores(model, score_layers) as scores:
            outputs = hidden_and_row_logits(model, inputs, rows, split, all_hidden_states, attentions)
        return outputs._replace(scores=scores())
    extra = {"output_hidden_states": True} if all_hidden_states else {}
    if attentions:
        extra["output_attentions"] = True
    if split:
        inner = model.module if hasattr(model, "module") else model
        encoder_name, head = _SPLITS[inner.config.model_type]
        encoder = getattr(inner, encoder_name)
        out = encoder(**model_inputs(encoder, inputs), return_dict=True, **extra)
        hidden = out.last_hidden_state
        return LMOutputs(hidden, head(inner)(hidden[rows]), None, out.hidden_states, out.attentions)
    out = model(**model_inputs(model, inputs), return_dict=True, **{**extra, "output_hidden_states": True})
    return LMOutputs(
        out.hidden_states[-1],
        out.logits[rows],
        out.logits,
        out.hidden_states if all_hidden_states else None,
        out.attentions,
    )


# model_type → (layer list under the base model, query projection, key projection) inside a layer.
_QUERY_KEY: dict[str, tuple[str, str, str]] = {
    "bert": ("encoder.layer", "attention.self.query", "attention.self.key"),
    "roberta": ("encoder.layer", "attention.self.query", "attention.self.key"),
    "distilbert": ("transformer.layer", "attention.q_lin", "attention.k_lin"),
}


def has_attention_scores(model: nn.Module) -> bool:
    return getattr(getattr(getattr(model, "module", model), "config", None), "model_type", None) in _QUERY_KEY


@contextlib.contextmanager
def capture_attention_scores(model: nn.Module, layers: list[int]) -> Iterator[Callable[[], dict[int, torch.Tensor]]]:
    """Within the block, a forward of `model` keeps the query and key projections of `layers` (1-based);
    the yielded function turns them into pre-softmax scores QKᵀ/√d, (B, heads, L, L), padding not masked.

    No attention implementation returns scores (eager returns probabilities, SDPA nothing). Forward hooks
    on the query and key projections read them from the model's own pass: no recomputation, and the
    gradients flow through the same graph as the layer's.
    """
    inner = getattr(model, "module", model)
    layer_list, query, key = _QUERY_KEY[inner.config.model_type]
    blocks = inner.base_model.get_submodule(layer_list)
    heads = getattr(inner.config, "n_heads", None) or inner.config.num_attention_heads
    kept: dict[tuple[int, int], torch.Tensor] = {}
    handles = [
        blocks[i - 1]
        .get_submodule(name)
        .register_forward_hook(lambda _m, _a, out, at=(i, which): kept.__setitem__(at, out))
        for i in layers
        for which, name in enumerate((query, key))
    ]

    def scores() -> dict[int, torch.Tensor]:
        result = {}
        for i in layers:
            q, k = kept[(i, 0)], kept[(i, 1)]
            batch, length, width = q.shape
            q = q.view(batch, length, heads, width // heads).transpose(1, 2)
            k = k.view(batch, length, heads, width // heads).transpose(1, 2)
            result[i] = q @ k.transpose(-1, -2) * (width // heads) ** -0.5
        return result

    try:
        yield scores
    finally:
        for handle in handles:
            handle.remove()
