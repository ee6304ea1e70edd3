"""Peak memory of a distillation step against student-only MLM training at the same batch. Prints one JSON line.

    python benchmarks/peak_memory.py           # BERT-base shape (12 x 768, built in code) -> 6 layers, 32 x 128
    python benchmarks/peak_memory.py --tiny    # tiny models built in code (CI)

Each phase runs in a fresh process (this script starts itself with --phase) and takes `--steps` whole
training steps: DistillationTrainer.compute_loss, backward, AdamW step. Phases: "mlm", the student alone
on L_mlm (no teacher: the baseline that distillation must beat); "distil", DistilBERT's triple loss with
L_ce at every real token (the paper's setting), the vocabulary projection inside the loss
(hf_distil/fused_linear.py); "distil_logits", the same with the rows' logits materialised
(DistillationTrainer.projection_in_loss = False, the path before fused_linear.py). Peak: the process's
resident set on a CPU (getrusage: Python, torch, both models, the optimizer, everything), or
torch.cuda.max_memory_allocated on a GPU. The high-water mark is reset once the models are built (Linux
/proc/self/clear_refs), so that building them does not count: the MLM phase cuts its student from a teacher
too, then drops it. `baseline_mib` is the peak after the imports, before any model (on a GPU, 0); the
"net" ratios leave it out. Goal: distil / mlm <= 1.3.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from train_step import machine, models_and_batch

from hf_distil import DistillationArguments, DistillationTrainer
from hf_distil.cli import run_script

PHASES = ("mlm", "distil", "distil_logits")


def peak_mib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


def reset_peak(device: str) -> bool:
    """Start the high-water mark afresh; False where the system cannot (the peak then counts from start-up)."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the resident set's high-water mark (Linux >= 4.0)
    except OSError:
        return False
    return True


def measure(phase: str, cli: argparse.Namespace) -> dict:
    """One phase, in this process: build, train `cli.steps` steps, return its peak and step times."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    baseline = peak_mib(device)
    teacher, student, batch = models_and_batch(cli.tiny, cli.batch_size, cli.length, bert_base=not cli.tiny)
    distil = phase != "mlm"
    student = student.to(device)
    batch = {k: v.to(device) for k, v in batch.items()}
    with tempfile.TemporaryDirectory() as out:
        args = DistillationArguments(
            output_dir=out,
            report_to="none",
            use_cpu=device == "cpu",
            alpha_ce=5.0 if distil else 0.0,
            alpha_cos=1.0 if distil else 0.0,
            cpu_keep_freed_memory=cli.keep_freed_memory,
        )
        trainer = DistillationTrainer(model=student, teacher_model=teacher.to(device) if distil else None, args=args)
    del teacher  # the trainer holds it when it needs it
    trainer.projection_in_loss = phase != "distil_logits"
    optimizer = trainer.create_optimizer()
    gc.collect()
    reset = reset_peak(device)
    seconds = []
    for _ in range(cli.steps):
        start = time.perf_counter()
        trainer.compute_loss(student, dict(batch)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(round(time.perf_counter() - start, 3))
    return {
        "peak_mib": round(peak_mib(device), 1),
        "baseline_mib": round(baseline, 1),
        "reset": reset,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument(
        "--steps", type=int, default=2, help="training steps per phase (the optimizer's state appears at the first)"
    )
    parser.add_argument("--batch_size", type=int, default=None, help="default 32 (--tiny: 8)")
    parser.add_argument("--length", type=int, default=None, help="default 128 (--tiny: 32)")
    parser.add_argument(
        "--keep_freed_memory", action="store_true", help="glibc keeps freed memory (CPU; the recipe's setting)"
    )
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # a child process measuring one phase
    cli = parser.parse_args()
    cli.batch_size = cli.batch_size or (8 if cli.tiny else 32)
    cli.length = cli.length or (32 if cli.tiny else 128)
    if cli.phase:
        print(json.dumps(measure(cli.phase, cli)))
        return
    here = Path(__file__).resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parents[1]), os.environ.get("PYTHONPATH", "")])}
    results = {}
    for phase in PHASES:  # each in a fresh process: a peak is a high-water mark
        done = subprocess.run(
            [sys.executable, str(here), *sys.argv[1:], "--phase", phase], capture_output=True, text=True, env=env
        )
        if done.returncode != 0:
            sys.exit(f"phase {phase} failed:\n{done.stderr[-3000:]}")
        results[phase] = json.loads(done.stdout.strip().splitlines()[-1])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    peak = {p: r["peak_mib"] for p, r in results.items()}
    net = {p: r["peak_mib"] - r["baseline_mib"] for p, r in results.items()}
    report = {
        **machine("peak_memory", device, cli),
        "steps": cli.steps,
        "peak_reset_after_building": all(r["reset"] for r in results.values()),
        "keep_freed_memory": cli.keep_freed_memory,
        "peak_mib": peak,
        "baseline_mib": {p: r["baseline_mib"] for p, r in results.items()},
        "step_seconds": {p: r["seconds"] for p, r in results.items()},
        "distil_over_mlm": round(peak["distil"] / peak["mlm"], 3),
        "distil_logits_over_mlm": round(peak["distil_logits"] / peak["mlm"], 3),
        "net_distil_over_mlm": round(net["distil"] / net["mlm"], 3),
        "net_distil_logits_over_mlm": round(net["distil_logits"] / net["mlm"], 3),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    run_script(main)
