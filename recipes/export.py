"""Export a saved student to ONNX for ONNX Runtime, Optimum and transformers.js: fp32 and a checked int8.

    python recipes/export.py --model outputs/distil_bert --output_dir outputs/distil_bert_onnx
    python recipes/export.py --model default-student --teacher default-teacher --output_dir outputs/onnx_demo \\
        --try_all --threads 1

Writes OUTPUT_DIR/onnx/model.onnx (fp32), OUTPUT_DIR/onnx/model_quantized.onnx (int8, transformers.js dtype
"q8") with config.json and the tokenizer beside them, and export_report.json; prints what each int8 scheme kept
of fp32's answers on held-out text and how fast each model runs at batch 1. The int8 file is written only if a
scheme keeps at least --min_agreement of fp32's answers; if none does, fp32 alone is written and the run exits 1.
A Sentence Transformers model (a folder with modules.json) is found by itself and exported as a sentence embedder:
pooling and normalisation inside the graph (output sentence_embedding), its modules copied beside it, and the
int8 gate on nearest-neighbour agreement, with the mean cosine of int8 embeddings with fp32's in the table.
'default-student' is the shipped teacher's 3-layer student before any training (init_student_from_teacher).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedModel

from hf_distil.cli import (
    check_output_dir,
    check_saved_model,
    mark_output_dir,
    parse_with_config,
    run_script,
    shipped_model_folder,
)
from hf_distil.deploy import FP32_KEY, SCHEME_NAMES, STUDENT_KEY, TEACHER_KEY, ExportReport, export_student, task_of
from hf_distil.errors import RunFailed, UsageError

SCRIPT = "export.py"  # in the output folder's record


@dataclass
class ExportArguments:
    model: str = field(
        metadata={
            "help": "Folder of a saved student (config.json, safetensors, tokenizer), or "
            "'default-student': the shipped teacher's 3-layer student, untrained."
        }
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where the ONNX folder goes (default: the model folder itself, so push_to_hub uploads both); "
            "another folder must be new, empty, or an earlier export's."
        },
    )
    teacher: str | None = field(
        default=None,
        metadata={"help": "Also time this model in PyTorch fp32 for the speed-up: a folder, or 'default-teacher'."},
    )
    min_agreement: float = field(
        default=0.95,
        metadata={"help": "Share of fp32's answers on held-out text that the int8 model must keep to be written."},
    )
    schemes: str = field(
        default=",".join(SCHEME_NAMES),
        metadata={"help": "int8 schemes to try, in this order (fastest first); the first that passes is kept."},
    )
    try_all: bool = field(default=False, metadata={"help": "Measure every scheme, not only up to the first pass."})
    num_sentences: int = field(default=200, metadata={"help": "Held-out sentences for the agreement check."})
    mask_draws: int = field(default=2, metadata={"help": "Masked LM: fixed mask draws per sentence."})
    speed_sentences: int = field(default=30, metadata={"help": "Sentences timed at batch 1, per model and round."})
    speed_rounds: int = field(default=3, metadata={"help": "Timing rounds (models take turns; median reported)."})
    calibration_sentences: int = field(
        default=64,
        metadata={
            "help": "Held-out sentences after the measured ones, which calibrated schemes (smooth_split, "
            "outlier_split) learn from."
        },
    )
    threads: int | None = field(
        default=None,
        metadata={
            "help": "CPU threads for PyTorch and ONNX Runtime (default: PyTorch's). "
            "1 is steadiest on a shared machine."
        },
    )


def load_teacher(name: str, model_dir: str) -> PreTrainedModel:
    """The teacher to time, with the student's head type (the shipped teacher only for masked LM or encoder)."""
    task = task_of(model_dir)
    if name == "default-teacher":
        if task.pipeline not in ("fill-mask", "feature-extraction"):
            raise UsageError(
                f"the shipped teacher is a masked LM and the student is {task.pipeline}; pass "
                "--teacher with a teacher fine-tuned on the task (a recipes/finetune.py output)."
            )
        from hf_distil.teachers import load_default_teacher

        teacher = load_default_teacher()[0]
        teacher = teacher if task.pipeline == "fill-mask" else teacher.base_model
    else:
        check_saved_model(name, "--teacher")
        teacher = task.auto_class.from_pretrained(name)
    return teacher.float().eval()


def format_report(report: ExportReport) -> str:
    """The schemes and models as a table: agreement with fp32, batch-1 latency, speed-up over the teacher; a
    sentence embedder's table adds the mean cosine of each int8 model's embeddings with fp32's."""
    base = TEACHER_KEY if TEACHER_KEY in report.latency_ms else STUDENT_KEY
    rows = [
        (name, "—", ms, "", "") for name, ms in report.latency_ms.items() if not name.startswith("student, ONNX int8")
    ]
    rows += [
        (
            f"student, ONNX int8 {s.name}",
            report.shown(s.agreement),
            s.latency_ms,
            f"{s.size_mb:.1f}",
            "" if s.mean_cosine is None else f"{s.mean_cosine:.4f}",
        )
        for s in report.schemes
    ]
    cosine = f" {'mean cos':>8}" if report.pooling else ""
    lines = [f"{'model':<48} {'agreement':>9} {'ms':>8} {'speed-up':>8} {'MB':>6}{cosine}"]
    for name, agreed, ms, size, cos in rows:
        agreed = f"{report.shown(1.0)} (ref)" if name == FP32_KEY else agreed
        cos = f" {cos:>8}" if report.pooling else ""
        lines.append(f"{name:<48} {agreed:>9} {ms:>8.2f} {report.latency_ms[base] / ms:>7.1f}x {size:>6}{cos}")
    if report.pooling:
        lines.append(
            f"sentence embedder: {report.pooling} inside the graph (output sentence_embedding); mean cos: cosine of "
            "the int8 embeddings with fp32's, averaged over the held-out sentences"
        )
    threads = f"{report.threads} thread{'s' if report.threads > 1 else ''}"
    return "\n".join(
        [
            f"{report.agreement_measure} with fp32 ONNX over {report.items} items from {report.sentences} held-out "
            f"sentences; batch-1 latency over {report.speed_sentences} sentences, {threads}; speed-up over "
            f"{base.split(',')[0]} in PyTorch fp32 (1-minute load {report.load_average[0]:.1f} → "
            f"{report.load_average[1]:.1f})",
            *lines,
            f"fp32 ONNX vs PyTorch: max |difference| {report.fp32_max_abs_diff:.1e}",
        ]
    )


def main() -> None:
    (cli,) = parse_with_config((ExportArguments,), sys.argv[1:])
    if cli.threads is not None:
        if cli.threads < 1:
            raise UsageError(f"--threads must be ≥ 1, got {cli.threads}.")
        torch.set_num_threads(cli.threads)
    model_dir = shipped_model_folder(cli.model, "--model")
    output_dir = cli.output_dir or model_dir
    # The output folder: the model's own (the default), or one that is new, empty or an earlier export's.
    check_output_dir(output_dir, SCRIPT, sources=[("the teacher", cli.teacher)], beside=[model_dir])
    task_of(model_dir)  # a config.json, of a head that export handles
    check_saved_model(model_dir, "--model")  # and the weights beside it
    teacher = load_teacher(cli.teacher, model_dir) if cli.teacher else None
    if Path(output_dir).resolve() != Path(model_dir).resolve():  # the model's own folder keeps its maker's record
        mark_output_dir(output_dir, SCRIPT)
    report = export_student(
        model_dir,
        output_dir,
        min_agreement=cli.min_agreement,
        schemes=[s for s in cli.schemes.split(",") if s],
        try_all=cli.try_all,
        teacher=teacher,
        num_sentences=cli.num_sentences,
        mask_draws=cli.mask_draws,
        speed_sentences=cli.speed_sentences,
        speed_rounds=cli.speed_rounds,
        calibration_sentences=cli.calibration_sentences,
    )
    print(format_report(report))
    if report.chosen is None:
        best = max(report.schemes, key=lambda s: s.agreement)
        raise RunFailed(
            f"no int8 scheme reached {report.shown(cli.min_agreement)} {report.agreement_measure} (best: "
            f"{best.name}, {report.shown(best.agreement)}); wrote fp32 only ({Path(output_dir, report.fp32_file)}); "
            f"lower --min_agreement to accept {best.name}."
        )
    modules = ", the Sentence Transformers modules" if report.pooling else ""
    print(
        f"wrote {output_dir}: {report.fp32_file} (fp32), {report.int8_file} (int8 {report.chosen}), config.json, "
        f"tokenizer{modules}, export_report.json"
    )


if __name__ == "__main__":
    run_script(main)
