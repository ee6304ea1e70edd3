import copy
import math
import time

import pytest
import torch
from torch import nn

from hf_distil import DataCollatorForDistillation, init_student_from_teacher
from hf_distil.evaluation.masked_lm import masked_lm_metrics, relative_speed
from hf_distil.hub import describe_speedup


@pytest.mark.slow
def test_a_model_against_itself_agrees_fully_and_reports_both_sides(teacher, tokenizer, dataset):
    metrics = masked_lm_metrics(teacher, dataset, tokenizer, teacher=copy.deepcopy(teacher), seeds=(0, 1))
    assert metrics["teacher_agreement"] == 1.0 and metrics["teacher_kl"] == pytest.approx(0.0, abs=1e-6)
    alone = masked_lm_metrics(teacher, dataset, tokenizer, seeds=(0, 1))
    assert metrics["teacher"] == pytest.approx(alone) and {k: metrics[k] for k in alone} == pytest.approx(alone)
    assert 0 <= alone["accuracy"] <= alone["top5_accuracy"] <= 1 and alone["masked_tokens"] > 0


def test_metrics_equal_a_computation_by_hand_on_the_same_masks(teacher, tokenizer, dataset):
    student = init_student_from_teacher(teacher, layers=[1, 2])
    with torch.no_grad():  # random models agree on one argmax everywhere: move the student away from its teacher
        for p in student.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    metrics = masked_lm_metrics(student, dataset, tokenizer, teacher=teacher, seeds=(0,))
    collator = DataCollatorForDistillation(tokenizer, mlm_probability=0.15, seed=0)
    batch = collator([{"input_ids": ids} for ids in dataset["input_ids"]])  # 64 rows: one batch of 64
    rows = batch["labels"] != -100
    labels, at_mask = batch["labels"][rows], batch["input_ids"][rows] == tokenizer.mask_token_id
    with torch.no_grad():
        s = student.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[rows]
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[rows]
    top5 = (s.topk(5, -1).indices == labels[:, None]).any(-1)
    kl = torch.nn.functional.kl_div(s.log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="batchmean")
    expected = {
        "accuracy": (s.argmax(-1) == labels)[at_mask].float().mean().item(),
        "top5_accuracy": top5[at_mask].float().mean().item(),
        "chosen_accuracy": (s.argmax(-1) == labels).float().mean().item(),
        "loss": torch.nn.functional.cross_entropy(s, labels).item(),
        "masked_tokens": int(at_mask.sum()),
        "teacher_agreement": (s.argmax(-1) == t.argmax(-1)).float().mean().item(),
        "teacher_kl": kl.item(),
    }
    assert {k: metrics[k] for k in expected} == pytest.approx(expected, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(expected["loss"]), rel=1e-5)
    assert 0 < expected["teacher_agreement"] < 1 and expected["teacher_kl"] > 1e-3  # a student unlike its teacher


def tiny_batches(count: int = 3) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(5, 20, (1, 6 + i), generator=g) for i in range(count)]
    return [{"input_ids": x, "attention_mask": torch.ones_like(x)} for x in ids]


def test_speed_is_timed_in_eval_mode_without_autograd_even_for_a_student_fresh_from_training(teacher, student):
    student.train().requires_grad_(True)
    batches = tiny_batches()
    assert student(**batches[0]).logits.requires_grad  # outside relative_speed this forward builds a graph
    seen: dict[str, list[tuple]] = {"teacher": [], "student": [], "encoder_teacher": [], "encoder_student": []}
    modules = {"teacher": teacher, "student": student}
    modules.update(encoder_teacher=teacher.base_model, encoder_student=student.base_model)
    for name, module in modules.items():
        module.register_forward_hook(
            lambda m, _a, out, name=name: seen[name].append(
                (m.training, torch.is_inference_mode_enabled(), torch.is_grad_enabled(), out[0].requires_grad)
            )
        )
    result = relative_speed(teacher, student, batches, repeats=2)
    assert result["passes"] == 2
    calls = 1 + 2 * len(batches)  # one warm-up batch, then 2 passes
    assert [len(seen[n]) for n in seen] == [calls, calls, 2 * calls, 2 * calls]  # an encoder also runs inside its LM
    assert {record for records in seen.values() for record in records} == {(False, True, False, False)}
    assert student.training and not teacher.training  # modes are given back
    assert all(p.requires_grad for p in student.parameters())
    assert result["speedup"] == result["teacher_seconds"] / result["student_seconds"]
    assert result["encoder_speedup"] == result["encoder_teacher_seconds"] / result["encoder_student_seconds"]


class Sleeper(nn.Module):
    """A stand-in model whose forward takes at least `seconds`; its encoder is itself."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    @property
    def base_model(self) -> nn.Module:
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        time.sleep(self.seconds)
        return (input_ids,)


def test_speed_passes_repeat_until_each_model_has_its_minimum_time_within_the_cap():
    batches = tiny_batches(1)
    # Each student pass sleeps >= 10 ms: 0.2 s takes more than the 2 required passes and at most 20.
    assert 2 < relative_speed(Sleeper(0.02), Sleeper(0.01), batches, repeats=2, min_seconds=0.2)["passes"] <= 20
    capped = relative_speed(Sleeper(0.0), Sleeper(0.0), batches, repeats=2, min_seconds=60.0, max_repeats=4)
    assert capped["passes"] == 4


def test_speed_ratios_read_as_faster_or_slower():
    assert describe_speedup(1.94) == "1.94x faster than the teacher"
    assert describe_speedup(0.52) == "0.52x the speed of the teacher (slower)"
    assert describe_speedup(1.001) == describe_speedup(0.999) == "as fast as the teacher (1.00x)"
    assert describe_speedup(2.5, than="BERT-base") == "2.50x faster than BERT-base"
