"""The soft-target KL and its gradient: compiled CPU kernel against torch ops, side by side. Prints one JSON line.

    python benchmarks/kl_kernel.py             # 4,096 rows of 30,522 logits (batch 32 x 128, BERT's vocabulary), T = 2
    python benchmarks/kl_kernel.py --tiny      # 64 rows of 1,000 (CI)

Both paths of `fused_losses.kl_and_gradient_` run on the same fresh copies of the logits, in turn, 5 repeats in
shuffled order, median; the torch-op path is the one that serves where the kernel cannot be built (kl_kernel.py).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch

from hf_distil.cli.run import run_script
from hf_distil.losses._ops import fused_losses, kl_kernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--vocabulary", type=int, default=30522)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="64 rows of 1,000 logits")
    cli = parser.parse_args()
    if cli.tiny:
        cli.rows, cli.vocabulary = 64, 1000
    if not kl_kernel.applies(torch.zeros(1)):
        raise SystemExit("the CPU KL kernel could not be built here (see the warning above): nothing to compare")
    g = torch.Generator().manual_seed(0)
    student = torch.randn(cli.rows, cli.vocabulary, generator=g) * 3
    teacher = student + torch.randn(cli.rows, cli.vocabulary, generator=g)
    paths = {
        "kernel": lambda s, t: fused_losses.kl_and_gradient_(s, t, 2.0, 0.5),
        "torch_ops": lambda s, t: fused_losses.kl_and_gradient_(s, t, 2.0, 0.5, kernel=False),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    kl = {}
    order = list(paths)
    for repeat in range(cli.repeats + 1):  # the first round warms up
        random.Random(repeat).shuffle(order)
        for name in order:
            s, t = student.clone(), teacher.clone()
            start = time.perf_counter()
            kl[name] = paths[name](s, t).item()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values[1:]) for name, values in times.items()}
    print(
        json.dumps(
            {
                "benchmark": "kl_kernel",
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "capability": torch.backends.cpu.get_cpu_capability(),
                "shape": [cli.rows, cli.vocabulary],
                "seconds": {name: round(value, 6) for name, value in median.items()},
                "torch_ops_over_kernel": round(median["torch_ops"] / median["kernel"], 2),
                "kl_relative_difference": abs(kl["kernel"] - kl["torch_ops"]) / abs(kl["torch_ops"]),
            }
        )
    )


if __name__ == "__main__":
    run_script(main)
