"""The compiled CPU KL kernel equals the maths in fp64; a machine that cannot build it falls back after one warning."""

from __future__ import annotations

import pytest
import torch

from hf_distil.losses._ops import kl_kernel

V = 2 * 8 * 16 + 5  # two of the kernel's 128-element sum blocks of AVX-512 vectors, and a tail


def fp64_kl_and_gradient(s, t, bias_s, bias_t, temperature, scale):
    log_q = torch.log_softmax((s.double() + bias_s.double()) / temperature, -1)
    log_p = torch.log_softmax((t.double() + bias_t.double()) / temperature, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1), scale * (log_q.exp() - log_p.exp())


def test_kernel_equals_fp64_maths_on_ordinary_confident_and_identical_rows():
    assert kl_kernel.applies(torch.zeros(1)), "the CPU KL kernel did not build on this machine"
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, V, generator=g) * 3, torch.randn(6, V, generator=g) * 3
    s[1], t[1] = s[1] * 30, t[1] * 30  # confident rows: softmaxes of ~1 and ~1e-30
    t[2] = s[2]  # identical rows: KL 0
    bias_s, bias_t = torch.randn(V, generator=g), torch.randn(V, generator=g)
    t[2] += bias_s - bias_t
    expected_kl, expected_grad = fp64_kl_and_gradient(s, t, bias_s, bias_t, 2.0, 0.3)
    grad = s.clone()
    kl = kl_kernel.kl_rows_and_gradient(grad, t.clone(), 2.0, 0.3, bias_s, bias_t)
    torch.testing.assert_close(kl, expected_kl, rtol=1e-6, atol=1e-6)
    assert abs(kl[2].item()) < 1e-6 and kl[0].item() > 0.1
    torch.testing.assert_close(grad.double(), expected_grad, rtol=1e-5, atol=1e-7)


def test_teacher_logits_are_only_read():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(3, V, generator=g), torch.randn(3, V, generator=g)
    before = t.clone()
    kl_kernel.kl_rows_and_gradient(s, t, 1.0, 1.0)
    assert torch.equal(t, before)


def test_a_machine_that_cannot_build_it_warns_once_and_uses_torch_ops(monkeypatch):
    import torch.utils.cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(torch.utils.cpp_extension, "load", no_compiler)
    kl_kernel._built.cache_clear()
    try:
        with pytest.warns(UserWarning, match=r"could not be built \(Ninja is required.*using torch ops instead"):
            assert not kl_kernel.applies(torch.zeros(1))
        assert not kl_kernel.applies(torch.zeros(1))  # decided once per process
    finally:
        kl_kernel._built.cache_clear()  # the next test builds (loads the cached build) again
