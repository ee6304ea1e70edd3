"""L_ce and L_mlm over a large vocabulary in one fused, row-chunked autograd function.

Why our own instead of torch's log_softmax / kl_div / cross_entropy: with a 30522-word vocabulary the
(rows × V) element-wise passes cost more than the matrix products on a CPU. Autograd's version makes
several full (rows × V) passes and tensors for the two terms (log-softmaxes, their gradients, the scaling,
the sum of the two gradients) and 4 exponentials per element. Here every temporary is a cache-sized
row chunk; the KL's gradient (q − p)/T is written in the forward, where both softmaxes are at hand (2
exponentials per element in all), and the backward scales it and adds the cross-entropy's gradient,
rebuilt at the labelled rows from per-row (max, log Σexp) statistics.
"""

from __future__ import annotations

import torch

from . import kl_kernel

IGNORE_INDEX = -100

# Elements of a (rows × V) chunk of the torch-op passes: 1 MB of fp32 on a CPU, so that the ~4 temporaries of a
# chunk stay in a core's L2 cache (the fastest of 2**16 to 2**20 when measured). On an accelerator allocations are
# cached and fewer, larger kernels are faster.
_CPU_CHUNK_ELEMENTS = 2**18
_ACCELERATOR_CHUNK_ELEMENTS = 2**26


def upcast(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 → fp32; fp32 and fp64 stay as they are (no copy)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def slices(rows: int, width: int, budget: int) -> list[slice]:
    """Consecutive row ranges of at most `budget` elements each (at least one row)."""
    step = max(1, budget // max(width, 1))
    return [slice(a, a + step) for a in range(0, rows, step)]


def row_slices(x: torch.Tensor) -> list[slice]:
    budget = _CPU_CHUNK_ELEMENTS if x.device.type == "cpu" else _ACCELERATOR_CHUNK_ELEMENTS
    return slices(x.shape[0], x.shape[-1], budget)


def log_normaliser(x: torch.Tensor) -> torch.Tensor:
    """(rows, 2): each row's max m and log Σ exp(x − m). Kept apart so that confident rows lose no precision."""
    m = x.amax(-1, keepdim=True)
    return torch.cat([m, (x - m).exp_().sum(-1, keepdim=True).log_()], dim=-1)


def kl_and_gradient_(
    s: torch.Tensor,
    t: torch.Tensor,
    temperature: float,
    scale: float | torch.Tensor,
    bias_s: torch.Tensor | None = None,
    bias_t: torch.Tensor | None = None,
    kernel: bool = True,
) -> torch.Tensor:
    """Σ_rows KL(softmax(t'/T) ‖ softmax(s'/T)), s' = s + bias_s and t' = t + bias_t (biases optional); s is
    overwritten with the KL's gradient with respect to s' times T · scale, that is scale · (q − p).

    s: (rows, V) fresh fp32 logits; t: (rows, V), only read. On a CPU the compiled kernel runs (kl_kernel.py);
    elsewhere, where it cannot, or with kernel=False (benchmarks/kl_kernel.py), torch ops on cache-sized row chunks.
    """
    biases = [b for b in (bias_s, bias_t) if b is not None]
    if kernel and kl_kernel.applies(s, t, *biases):
        return kl_kernel.kl_rows_and_gradient(s, t, temperature, float(scale), bias_s, bias_t).sum().to(s.dtype)
    kl = s.new_zeros(())
    for rows in row_slices(s):
        xs = s[rows] if bias_s is None else s[rows].add_(bias_s)
        xt = upcast(t[rows]) if bias_t is None else t[rows] + bias_t
        part, grad = _kl_and_gradient(xs.div_(temperature), xt.div(temperature))
        torch.mul(grad, scale, out=xs)
        kl += part
    return kl


def _kl_and_gradient(xs: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ KL(softmax(xt) ‖ softmax(xs)), q − p) from logits already divided by T; xs and xt are overwritten."""
    xs.sub_(xs.amax(-1, keepdim=True))
    xt.sub_(xt.amax(-1, keepdim=True))
    q, p = xs.exp(), xt.exp()
    zs, zt = q.sum(-1, keepdim=True), p.sum(-1, keepdim=True)
    q.div_(zs)
    p.div_(zt)
    # Σ p (log p − log q), log p − log q = (xt − xs) − (log zt − log zs) taken per element: for close
    # distributions a per-row Σ p (xt − xs) − (log zt − log zs) summed by torch in fp32 would cancel to rounding
    # noise. (The kernel takes the per-row form, but sums in fp64: tests/losses/test_kl_kernel.py.)
    kl = xt.sub_(xs).sub_(zt.log_().sub_(zs.log_())).mul_(p).sum()
    return kl, q.sub_(p)


def softmax_from_stats(x: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """softmax of x (a fresh tensor, modified in place) from its saved `log_normaliser` statistics."""
    return x.sub_(stats[:, :1]).sub_(stats[:, 1:]).exp_()


class _LogitTerms(torch.autograd.Function):
    """(Σ_rows KL(softmax(t/T) ‖ softmax(s/T)), Σ_labelled rows −log softmax(s)[label]), both unnormalised.

    `teacher` or `labels` may be None to compute one term only (its output is then 0).
    """

    @staticmethod
    def forward(
        ctx, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor | None, temperature: float
    ):
        ctx.set_materialize_grads(False)
        dtype = torch.promote_types(student.dtype, torch.float32)
        kl = student.new_zeros((), dtype=dtype)
        kl_grad = ce_stats = None
        if teacher is not None:
            # The KL's gradient (q − p)/T is written here, where q and p are at hand: the backward only scales it.
            kl_grad = student.to(dtype=dtype, memory_format=torch.contiguous_format, copy=True)
            kl += kl_and_gradient_(kl_grad, teacher.contiguous(), temperature, 1 / temperature)
        ce = student.new_zeros((), dtype=dtype)
        if labels is not None:
            ce_stats = student.new_zeros(student.shape[0], 2, dtype=dtype)
            labelled = labels.ne(IGNORE_INDEX)
            for rows in row_slices(student):
                keep = labelled[rows].nonzero().squeeze(1)
                ce_stats[rows][keep] = log_normaliser(upcast(student[rows][keep]))
            picked = upcast(student.gather(1, labels.clamp_min(0)[:, None]))
            ce = (ce_stats[:, 1:] - (picked - ce_stats[:, :1]))[labelled].sum()
        ctx.save_for_backward(student if labels is not None else None, labels, kl_grad, ce_stats)
        ctx.input_dtype, ctx.shape = student.dtype, student.shape
        return kl, ce

    @staticmethod
    def backward(ctx, grad_kl: torch.Tensor | None, grad_ce: torch.Tensor | None):
        student, labels, kl_grad, ce_stats = ctx.saved_tensors
        use_kl, use_ce = kl_grad is not None and grad_kl is not None, labels is not None and grad_ce is not None
        if not (use_kl or use_ce):
            return None, None, None, None
        if use_kl:
            grad = kl_grad * grad_kl
        else:
            grad = torch.zeros(
                ctx.shape, dtype=torch.promote_types(ctx.input_dtype, torch.float32), device=grad_ce.device
            )
        if use_ce:
            labelled = labels.ne(IGNORE_INDEX)
            for rows in row_slices(student):
                keep = labelled[rows].nonzero().squeeze(1)
                ce_grad = softmax_from_stats(upcast(student[rows][keep]), ce_stats[rows][keep])
                ce_grad[torch.arange(len(keep), device=keep.device), labels[rows][keep]] -= 1
                grad[rows].index_add_(0, keep, ce_grad.mul_(grad_ce))
        return grad.to(ctx.input_dtype), None, None, None


def logit_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor | None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(KL sum over rows at temperature T, cross-entropy sum over labelled rows), fp32, from (N, V) logits.

    No gradient reaches the teacher. Normalisation and the T² factor are the caller's (see losses.py).
    """
    teacher = None if teacher_logits is None else teacher_logits.detach()
    return _LogitTerms.apply(student_logits, teacher, labels, temperature)
