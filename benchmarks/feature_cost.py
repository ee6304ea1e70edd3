"""What does each beyond-DistilBERT feature add to a distillation step? Prints one JSON line.

    python benchmarks/feature_cost.py           # shipped teacher -> 3-layer student, batch 32 x 128, CPU default loss
    python benchmarks/feature_cost.py --tiny    # tiny models built in code (CI)

Every variant times compute_loss + backward on the same masked batch; variants run in a new random
order in each repeat (order effects of the allocator and caches spread over all) and the ratio of
medians to the plain triple loss is reported. "triple_loss_again" is a second, identical copy of the
baseline: its ratio is the noise of the measurement. "cached_teacher" trains L_ce from stored top-32
logits without running the teacher (L_cos off, as it needs the live teacher), against the triple loss
with L_cos off too.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import tempfile

import datasets
import torch
from train_step import models_and_batch, timed

from hf_distil import DistillationArguments, DistillationTrainer
from hf_distil.cli import run_script
from hf_distil.models import hidden_and_row_logits
from hf_distil.teachers import CACHE_COLUMNS

VARIANTS = {
    "triple_loss": {},
    "triple_loss_again": {},
    "hidden_mse": {"alpha_hidden_mse": 1.0},
    "attention_mse": {"alpha_attention_mse": 1.0},
    "attention_mse_scores": {"alpha_attention_mse": 1.0, "attention_maps": "scores"},
    "pkd": {"alpha_pkd": 1.0, "intermediate_layers": "pkd_skip"},
    "relation": {"alpha_relation": 1.0},
    "two_teachers": {},
    "loss_schedules": {"loss_schedules": {"temperature": [4, 1, "cosine"]}},
    "triple_loss_no_cos": {"alpha_cos": 0.0},
    "cached_teacher": {"alpha_cos": 0.0},
}
BASELINE = {"cached_teacher": "triple_loss_no_cos"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--repeats", type=int, default=7)
    cli = parser.parse_args()
    teacher, student, batch = models_and_batch(cli.tiny, 8 if cli.tiny else 32, 32 if cli.tiny else 128)
    rows = batch["labels"] != -100
    with torch.no_grad():
        values, ids = hidden_and_row_logits(teacher, batch, rows, split=True).row_logits.topk(32, dim=-1)
    cached_batch = {**batch, CACHE_COLUMNS[0]: ids, CACHE_COLUMNS[1]: values.half()}
    cache_marker = datasets.Dataset.from_dict({c: [] for c in CACHE_COLUMNS})
    steps = {}
    with tempfile.TemporaryDirectory() as out:
        for name, extra in VARIANTS.items():
            s, t = copy.deepcopy(student), copy.deepcopy(teacher)
            args = DistillationArguments(
                output_dir=out, report_to="none", restrict_ce_to_mask=True, use_cpu=True, **extra
            )
            teachers = (
                [t, copy.deepcopy(teacher)] if name == "two_teachers" else (None if name == "cached_teacher" else t)
            )
            trainer = DistillationTrainer(
                model=s,
                teacher_model=teachers,
                args=args,
                train_dataset=cache_marker if name == "cached_teacher" else None,
            )
            inputs = cached_batch if name == "cached_teacher" else batch

            def step(trainer=trainer, s=s, inputs=inputs):
                trainer.compute_loss(s, dict(inputs)).backward()
                s.zero_grad(set_to_none=True)

            steps[name] = step
        for fn in steps.values():  # warm-up
            fn()
        times = {name: [] for name in steps}
        order = list(steps)
        shuffle = random.Random(0).shuffle
        for _ in range(cli.repeats):
            shuffle(order)
            for name in order:
                times[name].append(timed(steps[name])[0])
    median = {name: statistics.median(v) for name, v in times.items()}
    report = {
        "benchmark": "feature_cost",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "tiny": cli.tiny,
        "seconds": {k: round(v, 6) for k, v in median.items()},
        "step_ratio": {
            k: round(median[k] / median[BASELINE.get(k, "triple_loss")], 3)
            for k in median
            if k not in ("triple_loss", "triple_loss_no_cos")
        },
    }
    print(json.dumps(report))


if __name__ == "__main__":
    run_script(main)
