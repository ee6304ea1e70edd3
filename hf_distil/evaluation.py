"""Held-out masked-LM quality: top-k accuracy, loss and perplexity, and teacher-student agreement."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import datasets
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from . import heads
from .collator import DataCollatorForDistillation
from .losses import soft_target_kl


class _Tally:
    """Running sums for the masked-LM metrics of one model."""

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
) -> dict[str, Any]:
    """Metrics over `len(seeds)` fixed, uniform mask draws of `dataset` (an `input_ids` column).

    accuracy / top5_accuracy: at [MASK] positions (what fill-mask users see); chosen_accuracy: over every
    chosen position (also the 10% random and 10% kept); loss: cross-entropy over chosen positions, and
    perplexity = exp(loss). With a teacher: agreement (same top-1 as the teacher), KL(teacher ‖ model),
    and the teacher's own metrics under "teacher" (from the same forward passes, not a second evaluation).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    own, teachers = _Tally(), _Tally()
    agree = kl = 0.0
    features = dataset.select_columns(["input_ids"])
    steps = len(seeds) * math.ceil(len(features) / batch_size)
    progress = tqdm(total=steps, desc="Evaluating masked LM", unit="batch", leave=False)
    for seed in seeds:
        collator = DataCollatorForDistillation(tokenizer, mlm_probability=mlm_probability, seed=seed)
        for start in range(0, len(features), batch_size):
            ids = features[start : start + batch_size]["input_ids"]
            batch = {k: v.to(device) for k, v in collator([{"input_ids": x} for x in ids]).items()}
            rows = batch["labels"] != -100
            logits = heads.hidden_and_row_logits(model, batch, rows, split=heads.can_split(model)).row_logits
            labels, at_mask = batch["labels"][rows], batch["input_ids"][rows] == tokenizer.mask_token_id
            own.add(logits, labels, at_mask)
            if teacher is not None:
                t_logits = heads.hidden_and_row_logits(teacher, batch, rows, split=heads.can_split(teacher)).row_logits
                teachers.add(t_logits, labels, at_mask)
                agree += float((t_logits.argmax(-1) == logits.argmax(-1)).sum())
                kl += float(soft_target_kl(logits, t_logits, 1.0, num_items=1))
            progress.update()
    progress.close()
    model.train(was_training)
    metrics: dict[str, Any] = own.metrics()
    if teacher is not None:
        metrics["teacher_agreement"] = agree / max(own.chosen, 1)
        metrics["teacher_kl"] = kl / max(own.chosen, 1)
        metrics["teacher"] = teachers.metrics()
    return metrics


@torch.no_grad()
def relative_speed(
    teacher: PreTrainedModel, student: PreTrainedModel, batches: Sequence[dict[str, torch.Tensor]], repeats: int = 3
) -> dict[str, float]:
    """Seconds per pass over `batches` for each model, timed alternately (median of `repeats`), and the ratio.

    Alternating the two models within one run keeps machine noise from favouring either.
    """
    times: dict[str, list[float]] = {"teacher": [], "student": []}
    for _ in range(repeats):
        for name, model in (("teacher", teacher), ("student", student)):
            model.eval()
            start = time.perf_counter()
            for batch in batches:
                model(**heads.model_inputs(model, batch))
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    teacher_s, student_s = statistics.median(times["teacher"]), statistics.median(times["student"])
    return {"teacher_seconds": teacher_s, "student_seconds": student_s, "speedup": teacher_s / student_s}
