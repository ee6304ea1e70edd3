"""The process a run lives in: what the launcher asked for, checked before anything loads, and how the
process keeps its freed memory.

Launch checks: an Accelerate/DeepSpeed launch configures processes through environment variables and a
DeepSpeed file; a wrong value otherwise fails deep inside those libraries, far from the setting.

Freed memory: glibc hands every allocation above 32 MB (a 600 × 30522 logit block is 75 MB) to mmap and
returns it to the kernel when freed; the next step's tensor of the same size then faults in every page again.
PyTorch's CPU performance guide reaches the same end by preloading jemalloc or tcmalloc; mallopt needs no extra
package. The cost is that the process's resident memory stays at its peak, like CUDA's caching allocator.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import functools
import json
import os
import platform
from pathlib import Path

import torch
from transformers import TrainingArguments
from transformers.utils import logging

from .errors import UsageError

logger = logging.get_logger(__name__)


_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to serve large blocks from its heap and never trim it; True when applied (Linux glibc only)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def check_fsdp_launch(args: TrainingArguments) -> None:
    """What an FSDP launch config (`accelerate launch` sets FSDP_* variables) asks that the run cannot do."""
    if env_flag("FSDP_CPU_RAM_EFFICIENT_LOADING"):
        raise UsageError(
            "fsdp_cpu_ram_efficient_loading: true has transformers load models on the first process only (the "
            "others get empty weights), but each process shards its teacher from its own copy; set it to false."
        )
    # Accelerate turns only accelerator processes into FSDP ones: processes on CPUs stay MULTI_CPU and drop the
    # FSDP plugin (accelerate/state.py), so the run would be DDP while the launch config says FSDP.
    if args.device.type == "cpu" and args.distributed_state.distributed_type == "MULTI_CPU":
        raise UsageError(
            "the launch config asks for FSDP, which Accelerate runs on GPUs only (on CPU processes it would "
            "silently train with DDP); on CPUs launch with a multi-CPU config (accelerate config: distributed_type "
            "MULTI_CPU), or run FSDP on GPUs."
        )


def check_fsdp_layer_classes(student: torch.nn.Module, names: list[str] | None) -> None:
    """The layer classes an FSDP config wraps (`fsdp_transformer_layer_cls_to_wrap`) exist in the student.

    Accelerate finds out only at the first training step, with a bare ValueError that names neither the setting nor
    the fix; the shipped ds_configs/fsdp2.yaml names DistilBERT's TransformerBlock, which a student of the
    teacher's own class (e.g. BertModel's BertLayer) lacks.
    """
    from accelerate.utils.dataclasses import get_module_class_from_name

    missing = [name for name in names or [] if get_module_class_from_name(student, name) is None]
    if missing:
        stacks = {type(m[0]).__name__ for m in student.modules() if isinstance(m, torch.nn.ModuleList) and len(m)}
        raise UsageError(
            f"fsdp_transformer_layer_cls_to_wrap: {', '.join(missing)} is not a layer class of the student "
            f"({type(student).__name__}); write {' or '.join(sorted(stacks)) or 'its block class'} in the launch "
            "config."
        )


def env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def check_deepspeed_config(value: str, flag: str) -> None:
    """An existing file of valid JSON (one object), or inline JSON / base64 JSON as transformers accepts.

    Otherwise one `UsageError` line naming the file: transformers raises a bare `JSONDecodeError` for a
    broken file and three chained tracebacks for a missing one.
    """
    path = Path(value)
    if not path.exists():
        if isinstance(_inline_json(value), dict):  # HfDeepSpeedConfig also takes the JSON itself
            return
        raise UsageError(f"{flag} {value}: no such file; pass the path of a DeepSpeed JSON config file.")
    if not path.is_file():
        raise UsageError(f"{flag} {value} is a directory; pass the path of a DeepSpeed JSON config file.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UsageError(
            f"{flag} {value} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            "fix the file (its keys: https://www.deepspeed.ai/docs/config-json/)."
        ) from None
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise UsageError(f"{flag} {value} is not UTF-8 text (byte 0x{byte:02x} at offset {error.start}).") from None
    if not isinstance(config, dict):
        kind = type(config).__name__
        raise UsageError(f"{flag} {value} must hold one JSON object of DeepSpeed settings, got a {kind}.")


def _inline_json(value: str) -> object:
    """`value` read as JSON, plain or base64-encoded (as HfDeepSpeedConfig reads it); None if neither."""
    for decode in (lambda v: v, lambda v: base64.urlsafe_b64decode(v).decode("utf-8")):
        try:
            return json.loads(decode(value))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
    return None


def accumulation_for(target: int, per_device: int, world_size: int) -> int:
    """Gradient-accumulation steps that bring per_device × world_size closest to `target` sequences."""
    if target < 1:
        raise UsageError(f"target_batch_size must be >= 1, got {target}.")
    per_step = per_device * world_size
    steps = max(1, round(target / per_step))
    if steps * per_step != target:
        logger.warning(
            f"target_batch_size {target} is not a multiple of {per_device} per device × {world_size} processes; "
            f"using {steps} accumulation steps = {steps * per_step} sequences per update."
        )
    return steps
