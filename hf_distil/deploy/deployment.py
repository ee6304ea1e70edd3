"""The deployment table (the paper's Table 3, extended): teacher and student, each in PyTorch fp32, ONNX Runtime
fp32 and ONNX Runtime int8, side by side in one process.

Per row: parameters, size on disk, CPU time per sentence at batch 1 and 32, and fidelity: top-1 agreement at
[MASK] with the same model in PyTorch fp32 (batch 1, the gate's inputs). The int8 file is whatever the export's
gate kept (`hf_distil.export.export_student`); a model whose gate kept none has no int8 row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..hub import describe_speedup
from .export import FP32_FILE, INT8_FILE, TASKS, export_student, input_names
from .fidelity import agreement, answers, fidelity_feeds
from .runtime import latencies, onnx_runner, torch_runner

PYTORCH, ONNX_FP32, ONNX_INT8 = "PyTorch fp32", "ONNX Runtime fp32", "ONNX Runtime int8"
BATCH_SIZES = (1, 32)


@dataclass
class DeploymentRow:
    model: str  # "teacher" or "student"
    runtime: str  # PYTORCH, ONNX_FP32 or ONNX_INT8
    parameters: int
    size_mb: float
    ms_per_sentence: dict[int, float]  # batch size -> CPU milliseconds per sentence
    agreement: float  # top-1 at [MASK] with this model in PyTorch fp32 (1.0 for that row itself)
    scheme: str | None = None  # the int8 scheme the gate kept

    @property
    def name(self) -> str:
        return f"{self.model}, {self.runtime}" + (f" ({self.scheme})" if self.scheme else "")


def _size_mb(paths: Sequence[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


def measure_deployment(
    models: dict[str, PreTrainedModel],
    tokenizer: PreTrainedTokenizerBase | Mapping[str, PreTrainedTokenizerBase],
    work_dir: str | Path,
    sentences: Sequence[str],
    fidelity_sentences: Sequence[str],
    rounds: int = 3,
    **export_options: Any,
) -> list[DeploymentRow]:
    """Export each masked LM of `models` (name -> model) under `work_dir`/name, then time every runtime of every
    model in turn on `sentences` (batches of 1 and 32) and count its top-1 agreement at [MASK] with the model in
    PyTorch fp32 on `fidelity_sentences` (one fixed mask draw each). `tokenizer`: one for all, or one per model (a
    student with a trimmed vocabulary reads its own pieces). `export_options` go to `export_student`."""
    tokenizers = tokenizer if isinstance(tokenizer, Mapping) else dict.fromkeys(models, tokenizer)
    task = TASKS["ForMaskedLM"]
    max_length = min(128, *(m.config.max_position_embeddings for m in models.values()))
    rows: list[DeploymentRow] = []
    runners: dict[str, Callable] = {}
    for name, model in models.items():
        model, tokenizer = model.float().eval(), tokenizers[name]
        folder = Path(work_dir, name)
        model.save_pretrained(folder / "pytorch")
        tokenizer.save_pretrained(folder / "pytorch")
        report = export_student(folder / "pytorch", folder / "onnx", **export_options)
        feeds = fidelity_feeds(task, tokenizer, fidelity_sentences, input_names(model, tokenizer), max_length, 1)
        variants = [(PYTORCH, torch_runner(model), list((folder / "pytorch").glob("*.safetensors")), None)]
        variants.append((ONNX_FP32, onnx_runner(folder / "onnx" / FP32_FILE), [folder / "onnx" / FP32_FILE], None))
        if report.int8_file:
            int8 = folder / "onnx" / INT8_FILE
            variants.append((ONNX_INT8, onnx_runner(int8), [int8], report.chosen))
        reference = None
        for runtime, run, files, scheme in variants:
            outputs = [[np.asarray(o) for o in _logits(run(f))] for f in feeds]
            ours = answers(task, outputs, feeds, tokenizer.mask_token_id)
            reference = ours if reference is None else reference
            size = _size_mb(files)
            row = DeploymentRow(name, runtime, model.num_parameters(), size, {}, agreement(ours, reference), scheme)
            rows.append(row)
            runners[row.name] = run

    # Speed: every runtime of every model takes its turn within each round, on the same sentences (the i-th batch of
    # each model's own pieces).
    for size in BATCH_SIZES:
        batches = {}
        for name, tokenizer in tokenizers.items():
            encoded = [tokenizer(s, truncation=True, max_length=max_length)["input_ids"] for s in sentences]
            batches[name] = [
                _padded(encoded[i : i + size], tokenizer.pad_token_id) for i in range(0, len(encoded), size)
            ]
        turns = {row.name: functools.partial(_run_batch, runners[row.name], batches[row.model]) for row in rows}
        timed = latencies(turns, range(len(batches[rows[0].model])), rounds)
        for row in rows:
            row.ms_per_sentence[size] = timed[row.name] * len(batches[row.model]) / len(sentences)
    return rows


def _run_batch(run: Callable, batches: Sequence[dict[str, np.ndarray]], index: int) -> Any:
    return run(batches[index])


def _logits(outputs: Any) -> list:
    """The first output of a PyTorch model (a ModelOutput) or an ONNX Runtime session (a list), as a list."""
    return [outputs.logits.numpy()] if hasattr(outputs, "logits") else [outputs[0]]


def _padded(ids: Sequence[Sequence[int]], pad: int) -> dict[str, np.ndarray]:
    length = max(len(x) for x in ids)
    input_ids = np.array([list(x) + [pad] * (length - len(x)) for x in ids], dtype=np.int64)
    mask = np.array([[1] * len(x) + [0] * (length - len(x)) for x in ids], dtype=np.int64)
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}


def format_deployment(rows: Sequence[DeploymentRow]) -> str:
    """The rows as a table, with each runtime's speed-up over the teacher in PyTorch fp32 at batch 1."""
    base = next(r for r in rows if r.model == "teacher" and r.runtime == PYTORCH).ms_per_sentence[1]
    width = max(len(r.name) for r in rows)
    header = (
        f"{'':<{width}}  {'params (M)':>10}  {'MB':>6}  {'ms, batch 1':>11}  {'ms, batch 32':>12}  "
        f"{'top-1 agreement':>15}  speed-up at batch 1"
    )
    lines = [header]
    for r in rows:
        lines.append(
            f"{r.name:<{width}}  {r.parameters / 1e6:>10.2f}  {r.size_mb:>6.1f}  {r.ms_per_sentence[1]:>11.2f}  "
            f"{r.ms_per_sentence[32]:>12.2f}  {r.agreement:>15.1%}  "
            f"{describe_speedup(base / r.ms_per_sentence[1], 'the teacher in PyTorch')}"
        )
    return "\n".join(lines)
