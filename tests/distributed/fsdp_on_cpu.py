"""Run a script on Accelerate's FSDP path in CPU processes (gloo), for the tests; launched by accelerate:

    accelerate launch --config_file FSDP2_CPU.yaml tests/distributed/fsdp_on_cpu.py SCRIPT ARGS...

Accelerate 1.15 picks FSDP only for processes on an accelerator: `AcceleratorState` turns a MULTI_GPU (or
MULTI_XPU, ...) state into FSDP, but processes without one form a MULTI_CPU state and the FSDP plugin is
dropped: the run silently becomes DDP. Here, and only here, the processes are given the state a GPU machine
gets (MULTI_GPU over a gloo group, on the CPU device), so that Accelerate and Trainer take their FSDP2 path
(fully_shard, full state dict saves, FSDP checkpoints) as they would on GPUs. fully_shard itself runs on CPU
with gloo in torch 2.13. Not covered by this: NCCL, GPU placement, mixed precision on GPUs.
"""

from __future__ import annotations

import os
import runpy
import sys

import torch
from accelerate.state import PartialState
from accelerate.utils import DistributedType


def main() -> None:
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true" or torch.accelerator.is_available():
        raise SystemExit("fsdp_on_cpu.py runs under `accelerate launch` with an FSDP config, without GPUs")
    torch.distributed.init_process_group("gloo")  # rank and world from the launcher's environment
    os.environ["ACCELERATE_TORCH_DEVICE"] = "cpu"
    PartialState._prepare_backend = lambda self, *args, **kwargs: ("gloo", DistributedType.MULTI_GPU)
    script, *sys.argv[1:] = sys.argv[1:]
    sys.argv[0] = script
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
