"""L_ce and L_mlm over a large vocabulary in one fused, row-chunked autograd function.

Why our own instead of torch's log_softmax / kl_div / cross_entropy: with a 30522-word vocabulary the
(rows × V) element-wise passes cost more than the matrix products on a CPU, and most of that is not
arithmetic but memory: every fresh 70 MB tensor is above glibc's mmap threshold, so each step pays its
page faults again. Autograd's version allocates ~8 such tensors for the two terms (log-softmaxes,
their gradients, the scaling and the sum of the two gradients). Here the only (rows × V) tensor is the
one gradient both terms write into, built in cache-sized row chunks from per-row (max, log Σexp)
statistics saved by the forward. benchmarks/train_step.py measures what this buys.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100

# Elements of a (rows × V) chunk: ~4 MB of fp32 on a CPU (cache-sized, below the mmap threshold); on an
# accelerator allocations are cached and fewer, larger kernels are faster.
_CPU_CHUNK_ELEMENTS = 2**20
_ACCELERATOR_CHUNK_ELEMENTS = 2**26


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 → fp32; fp32 and fp64 stay as they are (no copy)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _row_slices(x: torch.Tensor) -> list[slice]:
    budget = _CPU_CHUNK_ELEMENTS if x.device.type == "cpu" else _ACCELERATOR_CHUNK_ELEMENTS
    step = max(1, budget // max(x.shape[-1], 1))
    return [slice(a, a + step) for a in range(0, x.shape[0], step)]


def _log_normaliser(x: torch.Tensor) -> torch.Tensor:
    """(rows, 2): each row's max m and log Σ exp(x − m). Kept apart so that confident rows lose no precision."""
    m = x.amax(-1, keepdim=True)
    return torch.cat([m, (x - m).exp_().sum(-1, keepdim=True).log_()], dim=-1)


def _softmax(x: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """softmax of x (a fresh tensor, modified in place) from its saved `_log_normaliser` statistics."""
    return x.sub_(stats[:, :1]).sub_(stats[:, 1:]).exp_()


class _LogitTerms(torch.autograd.Function):
    """(Σ_rows KL(softmax(t/T) ‖ softmax(s/T)), Σ_labelled rows −log softmax(s)[label]), both unnormalised.

    `teacher` or `labels` may be None to compute one term only (its output is then 0).
    """

    @staticmethod
    def forward(ctx, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor | None, temperature: float):
        ctx.set_materialize_grads(False)
        dtype = torch.promote_types(student.dtype, torch.float32)
        kl = student.new_zeros((), dtype=dtype)
        s_stats = t_stats = ce_stats = None
        if teacher is not None:
            s_stats = student.new_empty(student.shape[0], 2, dtype=dtype)
            t_stats = torch.empty_like(s_stats)
            for rows in _row_slices(student):
                xs = _upcast(student[rows]).div(temperature)
                xt = _upcast(teacher[rows]).div(temperature)
                s_max, t_max = xs.amax(-1, keepdim=True), xt.amax(-1, keepdim=True)
                xs.sub_(s_max)
                xt.sub_(t_max)
                log_zs = xs.exp().sum(-1, keepdim=True).log_()
                et = xt.exp()
                zt = et.sum(-1, keepdim=True)
                # Σ p (log p − log q) with p = et/zt, log p = xt − log zt, log q = xs − log zs, Σ p = 1 per row.
                kl += (xt.sub_(xs).mul_(et).sum(-1, keepdim=True) / zt - zt.log() + log_zs).sum()
                s_stats[rows] = torch.cat([s_max, log_zs], dim=-1)
                t_stats[rows] = torch.cat([t_max, zt.log()], dim=-1)
        ce = student.new_zeros((), dtype=dtype)
        if labels is not None:
            ce_stats = student.new_zeros(student.shape[0], 2, dtype=dtype)
            labelled = labels.ne(IGNORE_INDEX)
            for rows in _row_slices(student):
                keep = labelled[rows].nonzero().squeeze(1)
                ce_stats[rows][keep] = _log_normaliser(_upcast(student[rows][keep]))
            picked = _upcast(student.gather(1, labels.clamp_min(0)[:, None]))
            ce = (ce_stats[:, 1:] - (picked - ce_stats[:, :1]))[labelled].sum()
        ctx.temperature = temperature
        ctx.save_for_backward(student, teacher, labels, s_stats, t_stats, ce_stats)
        return kl, ce

    @staticmethod
    def backward(ctx, grad_kl: torch.Tensor | None, grad_ce: torch.Tensor | None):
        student, teacher, labels, s_stats, t_stats, ce_stats = ctx.saved_tensors
        T = ctx.temperature
        grad = torch.zeros_like(student) if labels is not None and teacher is None else torch.empty_like(student)
        labelled = labels.ne(IGNORE_INDEX) if labels is not None else None
        for rows in _row_slices(student):
            chunk = None
            if teacher is not None and grad_kl is not None:
                q = _softmax(_upcast(student[rows]).div(T), s_stats[rows])
                p = _softmax(_upcast(teacher[rows]).div(T), t_stats[rows])
                chunk = q.sub_(p).mul_(grad_kl / T)
            elif teacher is not None:
                chunk = student.new_zeros(student[rows].shape, dtype=s_stats.dtype)
            if labels is not None and grad_ce is not None:
                keep = labelled[rows].nonzero().squeeze(1)
                ce_grad = _softmax(_upcast(student[rows][keep]), ce_stats[rows][keep])
                ce_grad[torch.arange(len(keep), device=keep.device), labels[rows][keep]] -= 1
                ce_grad.mul_(grad_ce)
                if chunk is None:
                    grad[rows][keep] = ce_grad.to(grad.dtype)
                    continue
                chunk.index_add_(0, keep, ce_grad)
            if chunk is not None:
                grad[rows] = chunk
        return grad, None, None, None


def logit_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor | None, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(KL sum over rows at temperature T, cross-entropy sum over labelled rows), fp32, from (N, V) logits.

    No gradient reaches the teacher. Normalisation and the T² factor are the caller's (see losses.py).
    """
    teacher = None if teacher_logits is None else teacher_logits.detach()
    return _LogitTerms.apply(student_logits, teacher, labels, temperature)
