"""MiniLMv2's self-attention relation distillation (Wang et al. 2021, arXiv:2012.15828): the maths and the choice
of layers and relation heads.

The student's last layer learns the query-query, key-key and value-value relations of one teacher layer. Each of
Q, K, V (all attention heads concatenated) is split anew into A_r relation heads of size d_r = H / A_r, on each
side with its own H: student and teacher may differ in width and head count, and no projection is learnt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from transformers import PreTrainedModel

from ..errors import UsageError
from ..models import heads as model_heads
from ._ops.fused_losses import _upcast

RELATIONS = ("query", "key", "value")  # the QQ, KK and VV relations


def relation_log_probs(x: torch.Tensor, heads: int, real: torch.Tensor) -> torch.Tensor:
    """log softmax(X_a X_aᵀ / √d_r) over the real keys, (B, A_r, L, L); 0 at padding keys.

    x (B, L, H): one projection's output, all attention heads concatenated; heads: A_r, dividing H;
    real (B, L) bool, True at real tokens.
    """
    batch, length, width = x.shape
    size = width // heads
    split = _upcast(x).view(batch, length, heads, size).transpose(1, 2)  # (B, A_r, L, d_r)
    keys = real[:, None, None, :]  # (B, 1, 1, L)
    # The lowest finite value rather than -inf masks padding keys: a row without real keys stays finite, as does
    # its gradient. The log-probabilities are then set to 0 there, so the KL reads 0·(0 − 0) at padding keys.
    scores = (split @ split.transpose(-1, -2) / math.sqrt(size)).masked_fill(~keys, torch.finfo(split.dtype).min)
    return torch.log_softmax(scores, dim=-1).masked_fill(~keys, 0.0)


def relation_kl(
    student_qkv: Sequence[torch.Tensor],
    teacher_qkv: Sequence[torch.Tensor],
    attention_mask: torch.Tensor,
    heads: int,
    num_items: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """MiniLMv2's loss: mean over QQ/KK/VV of KL(R_teacher ‖ R_student), summed over keys, averaged over the A_r
    relation heads and the real query tokens.

    student_qkv: (Q, K, V) of the student layer, each (B, L, H_s); teacher_qkv: the teacher layer's, each
    (B, L, H_t); attention_mask (B, L), 1 = real token (padding is neither key nor query); heads: A_r, dividing
    H_s and H_t. num_items: the real tokens of the whole accumulated batch (default: this batch's).
    """
    real = attention_mask.bool()
    total = torch.zeros((), device=attention_mask.device)
    for student, teacher in zip(student_qkv, teacher_qkv, strict=True):
        log_t = relation_log_probs(teacher, heads, real).detach()
        log_s = relation_log_probs(student, heads, real)
        kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # (B, A_r, L)
        total = total + kl.masked_fill(~real[:, None, :], 0.0).sum()
    tokens = real.sum() if num_items is None else torch.as_tensor(num_items, device=total.device)
    return total / (tokens.clamp_min(1) * heads * len(RELATIONS))


class RelationPlan(NamedTuple):
    """Which layers the relation term compares (1-based, as transformers' `hidden_states`) and in how many heads."""

    student_layer: int
    teacher_layer: int
    heads: int


def plan_relation(
    student: PreTrainedModel, teacher: PreTrainedModel, heads: int | None, teacher_layer: int
) -> RelationPlan:
    """The student's last layer, `teacher_layer` (negative counts from the end: -1 is the last) and A_r = `heads`
    (default: the teacher's attention heads), checked against both models in one `UsageError` line each."""
    for role, model in (("student", student), ("teacher", teacher)):
        if not model_heads.has_attention_scores(model):
            raise UsageError(
                f"alpha_relation reads the query/key/value projections of BERT, RoBERTa and DistilBERT layers; "
                f"the {role} is a {model.config.model_type!r} model: use one of those or set alpha_relation=0."
            )
    depth = teacher.config.num_hidden_layers
    layer = teacher_layer + depth + 1 if teacher_layer < 0 else teacher_layer
    if not 1 <= layer <= depth:
        raise UsageError(
            f"relation_teacher_layer {teacher_layer} is outside the teacher's {depth} layers; pass 1..{depth}, "
            f"or -1..-{depth} from the end (-1, the default, is the last)."
        )
    heads = heads or model_heads.attention_heads(teacher)
    s_width, t_width = student.config.hidden_size, teacher.config.hidden_size
    if s_width % heads or t_width % heads:
        common = math.gcd(s_width, t_width)
        raise UsageError(
            f"relation_heads {heads} must divide both hidden sizes, student {s_width} and teacher {t_width}; "
            f"pick a divisor of {common}."
        )
    return RelationPlan(student.config.num_hidden_layers, layer, heads)
