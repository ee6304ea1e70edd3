"""Running exported models: ONNX Runtime sessions, batch-1 runners for PyTorch and ONNX, and their latency."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from ..models.heads import forward_arguments


def session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session using `threads` intra-op threads (default: as many as torch uses)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initializers are not the user's business
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def latencies(
    runners: dict[Hashable, Callable[[dict[str, np.ndarray]], Any]],
    feeds: Sequence[dict[str, np.ndarray]],
    rounds: int = 3,
) -> dict[Hashable, float]:
    """Milliseconds per input at batch 1 for each runner: median over `rounds` passes over `feeds`.

    The runners take turns within each round, so load from other processes on the machine hits all alike.
    """
    times: dict[Hashable, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run(feeds[0])  # warm-up: first-call allocations are not the model's speed
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            for feed in feeds:
                run(feed)
            times[name].append((time.perf_counter() - start) / len(feeds) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def torch_runner(model: PreTrainedModel) -> Callable[[dict[str, np.ndarray]], Any]:
    """Batch-1 PyTorch fp32 forward on numpy inputs, under inference_mode; inputs the model does not take
    (token_type_ids for DistilBERT) are dropped."""
    accepted = forward_arguments(model)
    model.eval()

    @torch.inference_mode()
    def run(feed: dict[str, np.ndarray]) -> Any:
        return model(**{k: torch.from_numpy(v) for k, v in feed.items() if k in accepted})

    return run


def onnx_runner(path: str | Path) -> Callable[[dict[str, np.ndarray]], Any]:
    """ONNX Runtime forward on numpy inputs of any batch size, passing only the inputs the file declares."""
    runner = session(path)
    names = [i.name for i in runner.get_inputs()]
    return lambda feed: runner.run(None, {n: feed[n] for n in names})


def describe_machine() -> str:
    return f"CPU ({platform.processor() or platform.machine()})"
