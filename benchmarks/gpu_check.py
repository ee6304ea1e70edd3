"""Does the fp16 GPU path hold? One command for a single-GPU machine, nothing from the Hub, under 8 minutes.

    python benchmarks/gpu_check.py                     # on the GPU machine (make gpu-check)
    python benchmarks/gpu_check.py --dry-run           # anywhere: the plan, then every part on tiny CPU shapes

In order, each part timed and kept in the report even when a later one fails:
1. `pytest -m gpu tests`: GradScaler overflow skip, fused losses on CUDA against fp32, the recipe under --fp16,
   ZeRO-2 fp16 and FSDP2 bf16 (one process each).
2. The paper's step at BERT-base shape, built in code (12 × 768 teacher → DistilBERT's 6 layers, batch 32 × 128,
   soft targets at every token, fp16 autocast with a GradScaler): step / (teacher forward + student forward-backward),
   tokens/s, and torch.cuda.max_memory_allocated against the student trained alone (its own MLM loss, no teacher).
   Goals: step <= 1.10 × its parts; peak <= 1.3 × the student alone.
3. 200 fp16 steps of that set-up through Trainer at lr 5e-4 with the paper's loss weights: no NaN/Inf.
4. The paper's Table 3 on the GPU: teacher and student, batch 1 and 32 (benchmarks/inference.py's timing).

It prints one table and writes a JSON report (--report). Without CUDA it stops at once, naming the torch it found.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets
import torch
from inference import batches, sentences
from train_step import models_and_batch, timed
from transformers import default_data_collator

from hf_distil import DistillationArguments, DistillationTrainer
from hf_distil.callbacks import NonFiniteLossGuard
from hf_distil.cli import run_script
from hf_distil.errors import RunFailed
from hf_distil.evaluation import relative_speed
from hf_distil.models import hidden_and_row_logits

ROOT = Path(__file__).resolve().parents[1]
PLAN = (
    "1. pytest -m gpu tests (--dry-run: collected only)",
    "2. the paper's step at BERT-base shape, fp16: step / parts, tokens/s, peak memory / student alone",
    "3. {steps} fp16 training steps at lr 5e-4, loss weights 5/2/1, T=2: no NaN/Inf",
    "4. Table 3 on the GPU: teacher and student, batch 1 and 32",
)


def machine(device: str) -> dict:
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
    }


def gpu_tests(dry_run: bool) -> dict:
    """The `gpu` tests, in a subprocess (each of them starts its own runs)."""
    flags = ["--collect-only"] if dry_run else ["-p", "no:cacheprovider"]
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests", *flags]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=330)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
    return {"passed": done.returncode == 0, "summary": summary, "output_tail": done.stdout[-3000:]}


def arguments(out: str, device: str, **settings) -> DistillationArguments:
    """The paper's loss and optimiser (recipes/configs/distil_bert_paper.yaml), fp16 on a GPU."""
    paper = dict(temperature=2.0, alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, learning_rate=5e-4, adam_beta2=0.98)
    paper |= dict(adam_epsilon=1e-6, max_grad_norm=5.0, warmup_steps=0.05, report_to="none", disable_tqdm=True)
    return DistillationArguments(output_dir=out, use_cpu=device == "cpu", fp16=device == "cuda", **paper, **settings)


def paper_step(tiny: bool, device: str, repeats: int) -> dict:
    """Median seconds of the step and its parts, tokens/s and peak memory (CUDA), at every token."""
    teacher, student, batch = models_and_batch(tiny, 8 if tiny else 32, 32 if tiny else 128, bert_base=not tiny)
    batch = {k: v.to(device) for k, v in batch.items()}
    rows = batch["attention_mask"].bool()
    autocast = torch.autocast(device, dtype=torch.float16, enabled=device == "cuda")
    student.to(device)

    def student_alone():  # the student's own MLM loss at the masked rows, no teacher anywhere
        with autocast:
            loss = student(**batch).loss
        loss.backward()
        student.zero_grad(set_to_none=True)

    student_alone()
    _, alone_peak = timed(student_alone)
    teacher.to(device)
    with tempfile.TemporaryDirectory() as out:
        trainer = DistillationTrainer(model=student, teacher_model=teacher, args=arguments(out, device))
        scaler = trainer.accelerator.scaler

        def teacher_part():
            with torch.no_grad(), autocast:
                hidden_and_row_logits(teacher, batch, rows, split=True)

        def student_part():
            with autocast:
                logits = hidden_and_row_logits(student, batch, rows, split=True).row_logits
                loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"][rows])
            (scaler.scale(loss) if scaler else loss).backward()
            student.zero_grad(set_to_none=True)

        def step():
            with trainer.compute_loss_context_manager():
                loss = trainer.compute_loss(student, dict(batch))
            trainer.accelerator.backward(loss)
            student.zero_grad(set_to_none=True)

        phases = {"teacher_forward": teacher_part, "student_forward_backward": student_part, "step": step}
        seconds, peaks = {name: [] for name in phases}, {}
        for fn in phases.values():  # warm-up
            fn()
        for _ in range(repeats):
            for name, fn in phases.items():
                elapsed, peaks[name] = timed(fn)
                seconds[name].append(elapsed)
    median = {name: sorted(v)[len(v) // 2] for name, v in seconds.items()}
    parts = median["teacher_forward"] + median["student_forward_backward"]
    report = {
        "seconds": {k: round(v, 5) for k, v in median.items()},
        "step_over_parts": round(median["step"] / parts, 3),
        "tokens_per_second": round(int(rows.sum()) / median["step"]),
        "peak_mib": {"step": peaks["step"], "student_alone": alone_peak} if device == "cuda" else None,
    }
    if device == "cuda":
        report["peak_over_student_alone"] = round(peaks["step"] / alone_peak, 3)
    teacher.cpu(), student.cpu()
    return report


def training_run(tiny: bool, device: str, steps: int) -> dict:
    """`steps` Trainer updates of the paper-shaped pair on random text; every logged loss must be finite."""
    teacher, student, batch = models_and_batch(tiny, 8 if tiny else 32, 32 if tiny else 128, bert_base=not tiny)
    # The masked batch, repeated: fixed masks are enough to watch fp16 for overflow and NaN.
    data = datasets.Dataset.from_dict({k: v.tolist() * (4 if tiny else 8) for k, v in batch.items()})
    guard = NonFiniteLossGuard()
    with tempfile.TemporaryDirectory() as out:
        settings = dict(max_steps=steps, per_device_train_batch_size=len(batch["input_ids"]), logging_steps=10)
        args = arguments(out, device, save_strategy="no", **settings)
        trainer = DistillationTrainer(
            model=student, teacher_model=teacher, args=args, train_dataset=data, data_collator=default_data_collator
        )
        trainer.add_callback(guard)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "steps": trainer.state.global_step,
        "seconds": round(seconds, 1),
        "finite": all(math.isfinite(x) for x in losses) and all(torch.isfinite(p).all() for p in student.parameters()),
        "first_and_last_loss": [losses[0], losses[-1]] if losses else None,
        "scaler_skipped_steps": guard.skipped,
    }


def table3(tiny: bool, device: str) -> dict:
    teacher, student, _ = models_and_batch(tiny, 1, 8, bert_base=not tiny)
    teacher.to(device), student.to(device)
    ids = sentences(True, 16 if tiny else 100)
    out = {}
    for size in (1, 32):
        timing = relative_speed(teacher, student, batches(ids, size, device), repeats=3)
        out[f"batch_{size}"] = {k: round(timing[k], 5) for k in ("encoder_teacher_seconds", "encoder_student_seconds")}
        out[f"batch_{size}"]["encoder_speedup"] = round(timing["encoder_speedup"], 3)
    return out


def table(report: dict) -> str:
    m, rows = report["machine"], []
    rows.append(("machine", f"torch {m['torch']} (CUDA {m['cuda']}), {m['gpu'] or m['device']}"))
    tests = report.get("gpu_tests")
    if tests:
        rows.append(("pytest -m gpu", f"{'ok' if tests['passed'] else 'FAILED'}: {tests['summary']}"))
    step = report.get("paper_step")
    if step:
        rows.append(("step / (teacher fwd + student fwd-bwd)", f"{step['step_over_parts']} (goal <= 1.10)"))
        rows.append(("tokens/s, soft targets at every token", str(step["tokens_per_second"])))
        if "peak_over_student_alone" in step:
            peak = step["peak_mib"]
            share = f"{step['peak_over_student_alone']} (goal <= 1.3)"
            rows.append(
                ("peak memory / student alone", f"{share}: {peak['step']:.0f} / {peak['student_alone']:.0f} MiB")
            )
    run = report.get("training")
    if run:
        verdict = "finite" if run["finite"] else "NaN/Inf"
        rows.append(
            (f"{run['steps']} fp16 steps", f"{verdict}, {run['seconds']} s, skipped {run['scaler_skipped_steps']}")
        )
    for size, timing in report.get("table3", {}).items():
        seconds = f"{timing['encoder_teacher_seconds']} / {timing['encoder_student_seconds']} s"
        rows.append((f"Table 3 encoder, {size.replace('_', ' ')}", f"{seconds}, speed-up {timing['encoder_speedup']}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run every part on tiny CPU shapes")
    parser.add_argument("--steps", type=int, default=200, help="fp16 training steps of part 3 (--dry-run: 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats of each phase in part 2")
    parser.add_argument("--report", default="outputs/gpu_check.json", help="where the JSON report goes")
    cli = parser.parse_args()
    device = "cpu" if cli.dry_run else "cuda"
    steps = 2 if cli.dry_run else cli.steps
    report = {"benchmark": "gpu_check", "dry_run": cli.dry_run, "machine": machine(device)}
    print(f"gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, device {report['machine']['gpu']}")
    if not cli.dry_run and not torch.cuda.is_available():
        raise RunFailed(
            f"no CUDA device: torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no GPU; install a "
            "CUDA build of torch (the CPU wheel of `make setup` cannot) or run --dry-run to check the plan on a CPU."
        )
    print("plan:\n  " + "\n  ".join(PLAN).format(steps=steps), flush=True)
    report_path = Path(cli.report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    parts = {
        "gpu_tests": lambda: gpu_tests(cli.dry_run),
        "paper_step": lambda: paper_step(cli.dry_run, device, 2 if cli.dry_run else cli.repeats),
        "training": lambda: training_run(cli.dry_run, device, steps),
        "table3": lambda: table3(cli.dry_run, device),
    }
    failed = []
    for name, part in parts.items():
        start = time.perf_counter()
        try:
            report[name] = part()
        except Exception as error:  # noqa: BLE001 - the report keeps what ran; the exit code says what failed
            report[name] = {"error": f"{type(error).__name__}: {error}"}
            failed.append(name)
        report.setdefault("part_seconds", {})[name] = round(time.perf_counter() - start, 1)
        print(f"  {name}: {report['part_seconds'][name]} s", flush=True)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"report: {report_path}")
    if failed or not report["gpu_tests"].get("passed", False):
        raise RunFailed(f"gpu_check: {', '.join(failed) or 'gpu_tests'} failed; see {report_path}")


if __name__ == "__main__":
    run_script(main)
