"""The soft-target KL and its gradient as one compiled CPU kernel (csrc/kl_cpu.cpp), built on first use.

Why our own kernel: on a CPU, L_ce at every token is element-wise work over (rows × V) logits, and as torch
ops (fused_losses.py) it takes many passes and dispatches per cache-sized chunk. The kernel reads each row of
logits once from memory and works on it in cache, and it adds the vocabulary projection's biases as it reads,
which saves the full (rows × V) copy that addmm makes of them (fused_linear.py). Its sums are closer to fp64's.
Its speed against the torch ops: `benchmarks/kl_kernel.py`, figures on the docs' results page.

It is built with torch.utils.cpp_extension (a C++ compiler and ninja, both there wherever DeepSpeed builds its
ops) into TORCH_EXTENSIONS_DIR, once per machine, torch version and CPU capability. Where it cannot be built,
the torch-op path runs instead, with the same results, after one warning.
"""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("csrc") / "kl_cpu.cpp"
# The compiler flags of ATen's own kernels for each CPU capability (ATen/cpu/vec picks its vector type by them).
_CAPABILITY_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}


@functools.cache
def _built() -> bool:
    """Build (or load the cached build of) the kernel once per process; False, with a warning, if it fails."""
    capability = torch.backends.cpu.get_cpu_capability()
    flags = _CAPABILITY_FLAGS.get(capability)
    defines = [f"-DCPU_CAPABILITY={capability}", f"-DCPU_CAPABILITY_{capability}"] if flags else []
    name = re.sub(r"\W", "_", f"hf_distil_kl_{capability}_torch{torch.__version__}").lower()
    try:
        from torch.utils.cpp_extension import load

        load(
            name,
            [str(_SOURCE)],
            extra_cflags=["-O3", "-fopenmp", *defines, *(flags or [])],
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
        )
    except Exception as error:  # no compiler, no ninja, an unsupported platform: the torch-op path serves
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        warnings.warn(
            f"hf_distil: the CPU KL kernel could not be built ({reason}); using torch ops instead", stacklevel=2
        )
        return False
    return True


def applies(*tensors: torch.Tensor) -> bool:
    """True when the kernel can take these tensors: contiguous fp32 on a CPU (and the kernel is built)."""
    return all(x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous() for x in tensors) and _built()


def kl_rows_and_gradient(
    s: torch.Tensor,
    t: torch.Tensor,
    temperature: float,
    scale: float,
    bias_s: torch.Tensor | None = None,
    bias_t: torch.Tensor | None = None,
) -> torch.Tensor:
    """(rows,) fp64 KL(softmax((t + bias_t)/T) ‖ softmax((s + bias_s)/T)); s is overwritten with scale · (q − p).

    s, t: (rows, V) fp32 logits, contiguous; t is only read. See `applies`.
    """
    return torch.ops.hf_distil.kl_rows_and_gradient(s, t, bias_s, bias_t, float(temperature), float(scale))
