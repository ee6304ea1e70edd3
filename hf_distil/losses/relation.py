"""MiniLMv2's self-attention relation distillation (Wang et al. 2021, arXiv:2012.15828): the maths (which layers
and how many relation heads: `hf_distil.models.layer_map.plan_relation`).

The student's last layer learns the query-query, key-key and value-value relations of one teacher layer. Each of
Q, K, V (all attention heads concatenated) is split anew into A_r relation heads of size d_r = H / A_r, on each
side with its own H: student and teacher may differ in width and head count, and no projection is learnt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._ops.fused_losses import upcast

RELATIONS = ("query", "key", "value")  # the QQ, KK and VV relations


def relation_log_probs(x: torch.Tensor, heads: int, real: torch.Tensor) -> torch.Tensor:
    """log softmax(X_a X_aᵀ / √d_r) over the real keys, (B, A_r, L, L); 0 at padding keys.

    x (B, L, H): one projection's output, all attention heads concatenated; heads: A_r, dividing H;
    real (B, L) bool, True at real tokens.
    """
    batch, length, width = x.shape
    size = width // heads
    split = upcast(x).view(batch, length, heads, size).transpose(1, 2)  # (B, A_r, L, d_r)
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
