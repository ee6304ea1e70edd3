"""Held-out masked-LM quality (top-k accuracy, loss and perplexity, teacher-student agreement) and speed."""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data.collator import DataCollatorForDistillation
from ..losses.terms import soft_target_kl
from ..models import heads

REPORT_FILE = "held_out_results.json"


class _Tally:
    """Running sums for the masked-LM metrics of one model (plain sums, so processes can add theirs up)."""

    FIELDS = ("top1", "top5", "chosen_top1", "nll", "masks", "chosen")

    def __init__(self) -> None:
        self.top1 = self.top5 = self.chosen_top1 = self.nll = 0.0
        self.masks = self.chosen = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor, at_mask: torch.Tensor) -> None:
        top5 = logits.topk(5, dim=-1).indices
        hit1, hit5 = top5[:, 0] == labels, (top5 == labels[:, None]).any(-1)
        self.top1 += float(hit1[at_mask].sum())
        self.top5 += float(hit5[at_mask].sum())
        self.masks += int(at_mask.sum())
        self.chosen_top1 += float(hit1.sum())
        self.chosen += len(labels)
        self.nll += float(torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum"))

    def sums(self) -> list[float]:
        return [float(getattr(self, name)) for name in self.FIELDS]

    def set_sums(self, sums: Sequence[float]) -> None:
        for name, value in zip(self.FIELDS, sums, strict=True):
            setattr(self, name, int(value) if name in ("masks", "chosen") else value)

    def metrics(self) -> dict[str, float]:
        loss = self.nll / max(self.chosen, 1)
        return {
            "accuracy": self.top1 / max(self.masks, 1),
            "top5_accuracy": self.top5 / max(self.masks, 1),
            "chosen_accuracy": self.chosen_top1 / max(self.chosen, 1),
            "loss": loss,
            "perplexity": math.exp(loss),
            "masked_tokens": self.masks,
        }


@torch.no_grad()
def masked_lm_metrics(
    model: PreTrainedModel,
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    teacher: PreTrainedModel | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    batch_size: int = 64,
    mlm_probability: float = 0.15,
    all_processes: bool = False,
) -> dict[str, Any]:
    """Metrics over `len(seeds)` fixed, uniform mask draws of `dataset` (an `input_ids` column).

    accuracy / top5_accuracy: at [MASK] positions (what fill-mask users see); chosen_accuracy: over every
    chosen position (also the 10% random and 10% kept); loss: cross-entropy over chosen positions, and
    perplexity = exp(loss). With a teacher: agreement (same top-1 as the teacher), KL(teacher ‖ model),
    and the teacher's own metrics under "teacher" (from the same forward passes, not a second evaluation).

    all_processes=True: every process of a torch.distributed run calls this and gets the same metrics, equal
    to one process's. The batches are shared out and the sums added up. Under ZeRO-3 this is required, not
    a speed-up: each process holds only shards, and every forward gathers them from all processes, so each
    process runs the same number of forwards (one that runs out of batches repeats one, uncounted).
    DDP and DeepSpeed wrappers are unwrapped; a ZeRO-3 module runs its own forward (whose hooks gather).
    """
    model, teacher = getattr(model, "module", model), getattr(teacher, "module", teacher)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if all_processes else (0, 1)
    own, teachers = _Tally(), _Tally()
    agree_kl = [0.0, 0.0]
    features = dataset.select_columns(["input_ids"])
    # Masks depend on the seed and the batch's token ids only (see DataCollatorForDistillation), so a batch
    # is masked alike on whichever process runs it.
    jobs = [(seed, start) for seed in seeds for start in range(0, len(features), batch_size)]
    turns = math.ceil(len(jobs) / world)
    progress = tqdm(total=turns, desc="Evaluating masked LM", unit="batch", leave=False, disable=rank != 0)
    for turn in range(turns):
        index = rank + turn * world
        seed, start = jobs[index % len(jobs)]
        collator = DataCollatorForDistillation(tokenizer, mlm_probability=mlm_probability, seed=seed)
        ids = features[start : start + batch_size]["input_ids"]
        batch = {k: v.to(device) for k, v in collator([{"input_ids": x} for x in ids]).items()}
        rows = batch["labels"] != -100
        labels, at_mask = batch["labels"][rows], batch["input_ids"][rows] == tokenizer.mask_token_id
        logits = _row_logits(model, batch, rows)
        t_logits = _row_logits(teacher, batch, rows) if teacher is not None else None
        if index < len(jobs):  # a repeated batch only kept the ZeRO-3 gathers in step
            own.add(logits, labels, at_mask)
            if t_logits is not None:
                teachers.add(t_logits, labels, at_mask)
                agree_kl[0] += float((t_logits.argmax(-1) == logits.argmax(-1)).sum())
                agree_kl[1] += float(soft_target_kl(logits, t_logits, 1.0, num_items=1))
        progress.update()
    progress.close()
    model.train(was_training)
    if world > 1:
        sums = torch.tensor(own.sums() + teachers.sums() + agree_kl, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(sums)  # float64: counts stay exact
        sums, n = sums.tolist(), len(_Tally.FIELDS)
        own.set_sums(sums[:n])
        teachers.set_sums(sums[n : 2 * n])
        agree_kl = sums[2 * n :]
    metrics: dict[str, Any] = own.metrics()
    if teacher is not None:
        metrics["teacher_agreement"] = agree_kl[0] / max(own.chosen, 1)
        metrics["teacher_kl"] = agree_kl[1] / max(own.chosen, 1)
        metrics["teacher"] = teachers.metrics()
    return metrics


def _row_logits(model: nn.Module, batch: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
    # The LM head at the chosen rows only, except under ZeRO-3: there the model's own forward runs, since DeepSpeed
    # resets its parameter-fetch schedule in a hook on the top module (reset_step in partitioned_param_coordinator.py),
    # which a call into the encoder alone would skip. Same numbers, more head work.
    split = heads.can_split(model) and not heads.is_partitioned(model)
    return heads.hidden_and_row_logits(model, batch, rows, split=split).row_logits


def whole_model(model: PreTrainedModel) -> PreTrainedModel:
    """`model` itself, or under ZeRO-3 or FSDP2 a plain copy holding every weight, built from the gathered shards.

    Timing and parameter counts need the whole model in one process; a sharded model holds shards whose
    forward gathers from every process. Then every process must call this (the gather is collective).
    """
    model = getattr(model, "module", model)
    if not heads.is_partitioned(model):
        return model
    model_class = type(model)
    if heads.is_fully_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        from torch.distributed.fsdp import FSDPModule

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
        model_class = next(c for c in model_class.__mro__ if not issubclass(c, FSDPModule))  # fully_shard's base
    else:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
            state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    # A direct constructor call: from_config would partition the copy again (transformers' zero.Init).
    weight = next(t for t in state.values() if t.is_floating_point())
    whole = model_class(model.config).to(device=weight.device, dtype=weight.dtype)
    whole.load_state_dict(state)
    return whole.eval()


def describe_hardware() -> str:
    """What the speed figures were measured on, in words: the GPUs, or the CPU and the threads torch uses."""
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} × {torch.cuda.get_device_name(0)}"
    return f"CPU, {torch.get_num_threads()} threads ({platform.processor() or platform.machine()})"


@torch.inference_mode()
def relative_speed(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    batches: Sequence[dict[str, torch.Tensor]],
    repeats: int = 3,
    min_seconds: float = 0.0,
    max_repeats: int | None = None,
) -> dict[str, float]:
    """Seconds per pass over `batches` of each model, whole and encoder only, and the teacher/student ratios.

    Returns
      teacher_seconds, student_seconds, speedup: the whole masked LM (encoder and vocabulary head);
      encoder_teacher_seconds, encoder_student_seconds, encoder_speedup: the encoder alone (`base_model`),
        the paper's Table 3 setting (its tasks put a small head on the encoder; for small encoders the
        vocabulary projection at every token dominates the whole model's time);
      passes: passes timed per model. Seconds are medians over passes; speedup > 1 means the student is faster.
    The four are timed in turn within each pass (`time_models`).
    """
    models = {
        "teacher": teacher,
        "student": student,
        "encoder_teacher": teacher.base_model,
        "encoder_student": student.base_model,
    }
    seconds, passes = time_models(models, batches, repeats, min_seconds, max_repeats)
    return {
        "teacher_seconds": seconds["teacher"],
        "student_seconds": seconds["student"],
        "speedup": seconds["teacher"] / seconds["student"],
        "encoder_teacher_seconds": seconds["encoder_teacher"],
        "encoder_student_seconds": seconds["encoder_student"],
        "encoder_speedup": seconds["encoder_teacher"] / seconds["encoder_student"],
        "passes": passes,
    }


@torch.inference_mode()
def time_models(
    models: dict[str, nn.Module],
    batches: Sequence[dict[str, torch.Tensor]],
    repeats: int = 3,
    min_seconds: float = 0.0,
    max_repeats: int | None = None,
) -> tuple[dict[str, float], int]:
    """({name: median seconds per pass over `batches`}, passes timed per model).

    The models are timed in turn within each pass, so machine noise hits all alike, in eval mode and under
    inference_mode: no autograd even for weights that require grad (a student fresh from training). Each model gets
    the inputs its forward takes (`heads.model_inputs`). Passes repeat until each model has run `min_seconds` in
    all, at least `repeats` and at most `max_repeats` times (the cap keeps tiny test models, whose passes take
    milliseconds, fast).
    """
    modes = {name: model.training for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.eval()
        model(**heads.model_inputs(model, batches[0]))  # warm-up: first-call allocations are not the model's speed

    def more() -> bool:
        passes = len(next(iter(times.values())))
        short = min(sum(t) for t in times.values()) < min_seconds
        return passes < repeats or (short and (max_repeats is None or passes < max_repeats))

    while more():
        for name, model in models.items():
            start = time.perf_counter()
            for batch in batches:
                model(**heads.model_inputs(model, batch))
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    for name, model in models.items():
        model.train(modes[name])
    return {name: statistics.median(t) for name, t in times.items()}, len(next(iter(times.values())))


@dataclass
class RunReport:
    """What a run measured on held-out text and how fast, written as held_out_results.json beside the student
    for the reader and for later comparisons (the model card takes these values as a `hub.CardReport`). A field
    left None is unknown."""

    teacher_name: str | None = None
    base_model: str | None = None  # the Hub model the teacher is (or is built on), for the card's base_model
    other_teachers: list[str] = field(default_factory=list)
    teacher: dict[str, float] = field(default_factory=dict)  # held-out metrics of masked_lm_metrics
    student: dict[str, float] = field(default_factory=dict)
    eval_dataset: str | None = None
    speed_batch_1: dict[str, float] = field(default_factory=dict)  # relative_speed's result
    speed_sentences: int | None = None
    params: dict[str, int] = field(default_factory=dict)  # {"teacher": n, "student": n}
    teacher_layers: int | None = None
    layer_map: list[int] | str | None = None  # teacher layers kept, or the folder of a given student
    hardware: str | None = None
    world_size: int | None = None
    train_seconds: float | None = None

    def save(self, folder: str | Path) -> None:
        Path(folder, REPORT_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
