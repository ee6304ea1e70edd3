"""What does one distillation step cost against its parts? Prints one JSON line.

    python benchmarks/train_step.py            # shipped teacher (MiniLM, 6 layers) -> 3-layer student, batch 32 x 128
    python benchmarks/train_step.py --tiny     # tiny models built in code (CI)
    python benchmarks/train_step.py --bert_base --logits_step   # BERT-base's shape; and the step before fused_linear
    python benchmarks/train_step.py --reference_dir transformers-research-projects/distillation   # against it

Parts, each timed alone: the teacher's forward (no grad) and the student's forward + backward on its own
MLM loss. The step: DistillationTrainer.compute_loss + backward with DistilBERT's triple loss. Phases
run in a new random order in each repeat and medians are compared, so machine noise and order effects
hit all alike. Target:
step / (teacher + student) <= 1.05. Peak memory is measured on CUDA only (CPU: null). On a CPU the
Trainer keeps freed memory in the process (hf_distil/cpu_memory.py) for every phase alike;
--no_keep_freed_memory measures glibc's default instead. --logits_step adds the same step with the rows'
logits materialised (DistillationTrainer.projection_in_loss = False: the path before fused_linear.py).

--reference_dir adds the reference implementation's step, side by side: `Distiller.step` from the distillation/
folder of huggingface/transformers-research-projects (a copy you fetched; nothing of it is in this repository;
it needs `pip install gitpython tensorboardX`), on the same teacher, student and batch with the same loss
weights, its L_ce over the same rows, and no optimizer update (gradient accumulation never completes), so both
steps are the forwards, the loss and the backward. `reference_over_step` > 1 means ours is faster; run it in
several fresh processes, since the reference's time varies between processes.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import sys
import tempfile
import time

import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

from hf_distil import (
    DataCollatorForDistillation,
    DistillationArguments,
    DistillationTrainer,
    init_student_from_teacher,
)
from hf_distil.cli import run_script
from hf_distil.losses import mlm_loss
from hf_distil.models import hidden_and_row_logits


def models_and_batch(tiny: bool, batch_size: int, length: int, bert_base: bool = False):
    """(teacher, student, masked batch): tiny models, the shipped teacher, or (bert_base) BERT-base's shape with
    random weights and bert-base-uncased's tokenizer; the student keeps one teacher layer out of two."""
    if bert_base:
        from transformers import AutoTokenizer

        from hf_distil.teachers import packaged_encoder_path

        tokenizer = AutoTokenizer.from_pretrained(packaged_encoder_path())  # bert-base-uncased's 30,522 words
        teacher = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer)))  # 12 layers of 768
    elif tiny:
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(specials + [f"w{i}" for i in range(995)])})
        teacher = BertForMaskedLM(
            BertConfig(
                vocab_size=1000, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128
            )
        )
    else:
        from hf_distil.teachers import load_default_teacher

        teacher, tokenizer = load_default_teacher()
    student = init_student_from_teacher(teacher, layers="even")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5 if tiny else 1000, len(tokenizer), (batch_size, length), generator=g)
    ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    features = [{"input_ids": row.tolist()} for row in ids]
    return teacher.eval(), student.train(), DataCollatorForDistillation(tokenizer, seed=0)(features)


def machine(benchmark: str, device: str, cli: argparse.Namespace) -> dict:
    """The first fields of a benchmark's JSON line: what ran, on what, at which batch."""
    return {
        "benchmark": benchmark,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": device,
        "batch": [cli.batch_size, cli.length],
        "tiny": cli.tiny,
    }


class _NoSequences(torch.utils.data.Dataset):
    """Distiller builds a DataLoader in __init__; the benchmark calls its step() with the batch itself."""

    def __len__(self) -> int:
        return 1

    def batch_sequences(self, batch: list):
        raise RuntimeError("the benchmark never iterates the reference's DataLoader")


def reference_distiller(folder: str, teacher, student, args: DistillationArguments, dump_path: str):
    """The reference Distiller on our models, with our loss weights, ready for step(ids, mask, labels)."""
    sys.path.insert(0, folder)
    try:
        from distiller import Distiller
    except ImportError as error:
        raise SystemExit(
            f"--reference_dir {folder}: cannot import the reference Distiller ({error}); pass the distillation/ "
            "folder of huggingface/transformers-research-projects and `pip install gitpython tensorboardX`."
        ) from None
    never = 10**12
    params = argparse.Namespace(
        dump_path=dump_path, multi_gpu=False, fp16=False, n_gpu=0, local_rank=0, is_master=True,
        group_by_size=False, batch_size=1, n_epoch=1, mlm=True, mlm_mask_prop=0.15,
        word_mask=0.8, word_keep=0.1, word_rand=0.1, special_tok_ids={},
        temperature=args.temperature, alpha_ce=args.alpha_ce, alpha_mlm=args.alpha_mlm, alpha_cos=args.alpha_cos,
        alpha_clm=0.0, alpha_mse=0.0, restrict_ce_to_mask=args.restrict_ce_to_mask,
        gradient_accumulation_steps=never, log_interval=never, checkpoint_interval=never,
        weight_decay=0.0, learning_rate=args.learning_rate, adam_epsilon=1e-6, warmup_prop=0.0, max_grad_norm=5.0,
    )  # fmt: skip
    return Distiller(params, _NoSequences(), torch.ones(student.config.vocab_size), student, teacher)


def timed(fn) -> tuple[float, float | None]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2**20
    return time.perf_counter() - start, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--bert_base", action="store_true", help="BERT-base's shape (random weights) -> 6 layers")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=None, help="default 32 (--tiny: 8)")
    parser.add_argument("--length", type=int, default=None, help="default 128 (--tiny: 32)")
    parser.add_argument("--no_keep_freed_memory", action="store_true", help="leave glibc's allocator as it is (CPU)")
    parser.add_argument(
        "--logits_step",
        action="store_true",
        help="also time the step with the rows' logits materialised (projection_in_loss=False), side by side",
    )
    parser.add_argument("--reference_dir", help="the reference's distillation/ folder: time its step too")
    cli = parser.parse_args()
    cli.batch_size = cli.batch_size or (8 if cli.tiny else 32)
    cli.length = cli.length or (32 if cli.tiny else 128)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    teacher, student, batch = models_and_batch(cli.tiny, cli.batch_size, cli.length, cli.bert_base)
    teacher, student = teacher.to(device), student.to(device)
    batch = {k: v.to(device) for k, v in batch.items()}
    shuffle = random.Random(0).shuffle
    report = {
        **machine("train_step", device, cli),
        "bert_base": cli.bert_base,
        "keep_freed_memory": device == "cpu" and not cli.no_keep_freed_memory,
    }
    with tempfile.TemporaryDirectory() as out:
        for restrict in (False, True):
            args = DistillationArguments(
                output_dir=out,
                report_to="none",
                restrict_ce_to_mask=restrict,
                use_cpu=device == "cpu",
                cpu_keep_freed_memory=not cli.no_keep_freed_memory,
            )
            trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args)
            rows = batch["labels"] != -100 if restrict else batch["attention_mask"].bool()

            def teacher_part(rows=rows):
                with torch.no_grad():
                    hidden_and_row_logits(teacher, batch, rows, split=True)

            def student_part(rows=rows):
                logits = hidden_and_row_logits(student, batch, rows, split=True).row_logits
                mlm_loss(logits, batch["labels"][rows]).backward()
                student.zero_grad(set_to_none=True)

            def step(trainer=trainer, in_loss=True):
                trainer.projection_in_loss = in_loss
                trainer.compute_loss(student, dict(batch)).backward()
                student.zero_grad(set_to_none=True)

            phases = {
                "teacher_forward": teacher_part,
                "student_forward_backward": student_part,
                "distillation_step": step,
            }
            if cli.logits_step:
                phases["distillation_step_logits"] = functools.partial(step, in_loss=False)
            if cli.reference_dir:
                reference = reference_distiller(cli.reference_dir, teacher, student, args, out)

                def reference_step(reference=reference):
                    # The reference reads hidden states from every forward's output (ours asks for what it needs)
                    # and wants a boolean attention mask.
                    before = [model.config.output_hidden_states for model in (teacher, student)]
                    for model in (teacher, student):
                        model.config.output_hidden_states = True
                    reference.step(batch["input_ids"], batch["attention_mask"].bool(), batch["labels"])
                    student.zero_grad(set_to_none=True)
                    for model, value in zip((teacher, student), before):
                        model.config.output_hidden_states = value

                phases["reference_step"] = reference_step
            for fn in phases.values():  # warm-up
                fn()
            times = {name: [] for name in phases}
            memory = {}
            order = list(phases)
            for _ in range(cli.repeats):
                shuffle(order)
                for name in order:
                    seconds, peak = timed(phases[name])
                    times[name].append(seconds)
                    memory[name] = peak
            median = {name: statistics.median(values) for name, values in times.items()}
            key = "restrict_ce_to_mask" if restrict else "all_tokens"
            parts = median["teacher_forward"] + median["student_forward_backward"]
            report[key] = {
                "seconds": {k: round(v, 6) for k, v in median.items()},
                "peak_mib": memory if device == "cuda" else None,
                "step_over_parts": round(median["distillation_step"] / parts, 3),
            }
            if cli.logits_step:
                report[key]["logits_step_over_parts"] = round(median["distillation_step_logits"] / parts, 3)
            if cli.reference_dir:
                report[key]["reference_over_step"] = round(median["reference_step"] / median["distillation_step"], 3)
    report["restrict_speedup"] = round(
        report["all_tokens"]["seconds"]["distillation_step"]
        / report["restrict_ce_to_mask"]["seconds"]["distillation_step"],
        3,
    )
    print(json.dumps(report))


if __name__ == "__main__":
    run_script(main)
