"""A sentence embedder's deployment: batch-1 encode time of the teacher in PyTorch (the packaged all-MiniLM-L6-v2),
the 3-layer student in PyTorch, and the student's fp32 and int8 ONNX exports (pooling inside the graph), in turn in
one run; with the int8 model's nearest-neighbour agreement and mean cosine with its own fp32 (the export's gate).

    python benchmarks/embedder_inference.py --threads 1                          # its layers 0, 2, 4, untrained
    python benchmarks/embedder_inference.py --student outputs/distil_embeddings  # a student saved as ST model
    python benchmarks/embedder_inference.py --tiny                               # CI: a few sentences, one pass
    python benchmarks/embedder_inference.py --threads 1 --try_all                # every int8 scheme's gate figures

Encode is what a user calls: token states, then the pooling and normalisation of the teacher's Sentence
Transformers modules (PyTorch: `hf_distil.models.pooling`; ONNX: the graph's `sentence_embedding`). The gate's
sentences are the first held-out ones, the timed ones the last: no sentence is both. Issue 25's goals: int8 ≥ 8× the
PyTorch teacher, ≥ 95% nearest-neighbour agreement with its own fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, BertModel

from hf_distil import init_student_from_teacher
from hf_distil.cli import run_script
from hf_distil.deploy import (
    FP32_FILE,
    INT8_FILE,
    copy_sentence_transformers_modules,
    describe_machine,
    export_student,
    fidelity_feeds,
    held_out_sentences,
    latencies,
    task_of,
)
from hf_distil.deploy import session as onnx_session
from hf_distil.hub import describe_speedup
from hf_distil.models import Pooling
from hf_distil.teachers import packaged_encoder_path

TEACHER, STUDENT = "teacher, PyTorch fp32", "student, PyTorch fp32"
FP32, INT8 = "student, ONNX fp32", "student, ONNX int8"


def torch_encoder(model: BertModel, pooling: Pooling):
    """Batch-1 encode in PyTorch: forward, then the pooling of the Sentence Transformers modules."""
    model.eval()

    @torch.inference_mode()
    def run(feed: dict[str, np.ndarray]) -> torch.Tensor:
        inputs = {k: torch.from_numpy(v) for k, v in feed.items()}
        return pooling(model(**inputs).last_hidden_state, inputs["attention_mask"])

    return run


def onnx_encoder(path: Path):
    runner = onnx_session(path)
    return lambda feed: runner.run(["sentence_embedding"], feed)


def student_folder(scratch: Path, teacher_folder: Path, teacher: BertModel) -> Path:
    """The teacher's layers 0, 2, 4 saved as a Sentence Transformers model, untrained."""
    folder = scratch / "student"
    init_student_from_teacher(teacher, layers=[0, 2, 4], architecture="same").save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(teacher_folder)).save_pretrained(folder)
    copy_sentence_transformers_modules(teacher_folder, folder)
    return folder


def table(report: dict) -> str:
    threads = f"{report['threads']} thread{'s' if report['threads'] > 1 else ''}"
    lines = [
        f"Batch-1 encode, ms per sentence over {report['sentences']} held-out sentences, median of {report['passes']} "
        f"passes in turn; {threads}, {report['machine']}, 1-minute load {report['load_average'][0]:.1f} → "
        f"{report['load_average'][1]:.1f}",
    ]
    labels = {name: f"{name} ({report['int8_scheme']})" if name == INT8 else name for name in report["ms"]}
    width = max(len(label) for label in labels.values())
    lines.append(f"{'':<{width}} {'ms':>8}  speed-up")
    for name, ms in report["ms"].items():
        speedup = describe_speedup(report["ms"][TEACHER] / ms, "the teacher in PyTorch")
        lines.append(f"{labels[name]:<{width}} {ms:>8.2f}  {speedup}")
    if report["int8_scheme"]:
        lines.append(
            f"int8 vs its fp32 on {report['gate_sentences']} other held-out sentences: nearest-neighbour agreement "
            f"{report['nn_agreement']:.1%}, mean cosine {report['mean_cosine']:.4f}"
        )
    else:
        lines.append(f"no int8 scheme kept {report['min_agreement']:.0%} of fp32's nearest neighbours")
    lines += [f"  {s['name']}: {s['nn_agreement']:.1%}, mean cosine {s['mean_cosine']:.5f}" for s in report["schemes"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", help="a student saved as a Sentence Transformers model; default: layers 0, 2, 4")
    parser.add_argument("--tiny", action="store_true", help="CI: 20 gate sentences, 4 timed, one pass, one scheme")
    parser.add_argument("--sentences", type=int, default=None, help="sentences timed (default 100; --tiny: 4)")
    parser.add_argument("--repeats", type=int, default=None, help="timing passes (default 5; --tiny: 1)")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch and ONNX Runtime (default: PyTorch's)")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of the table")
    parser.add_argument("--try_all", action="store_true", help="the gate measures every int8 scheme (time: the kept)")
    cli = parser.parse_args()
    if cli.threads:
        torch.set_num_threads(cli.threads)
    count = cli.sentences or (4 if cli.tiny else 100)
    teacher_folder = packaged_encoder_path()
    teacher = BertModel.from_pretrained(str(teacher_folder)).eval()
    pooling = Pooling.from_folder(teacher_folder)
    # --tiny: blockwise, a scheme quick to write, on 20 sentences; otherwise the export's own gate, every scheme in
    # order until one keeps 95% of the nearest neighbours.
    gate = dict(schemes=["blockwise"], num_sentences=20) if cli.tiny else dict(num_sentences=200)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(cli.student) if cli.student else student_folder(Path(scratch), teacher_folder, teacher)
        out = Path(scratch, "onnx")
        export = export_student(folder, out, speed_sentences=1, speed_rounds=1, try_all=cli.try_all, **gate)
        student = BertModel.from_pretrained(str(folder)).eval()
        runners = {TEACHER: torch_encoder(teacher, pooling), STUDENT: torch_encoder(student, pooling)}
        runners[FP32] = onnx_encoder(out / FP32_FILE)
        if export.int8_file:
            runners[INT8] = onnx_encoder(out / INT8_FILE)
        names = [i.name for i in onnx_session(out / FP32_FILE).get_inputs()]
        timed_sentences = held_out_sentences()[-count:]
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        feeds = fidelity_feeds(task_of(folder), tokenizer, timed_sentences, names, max_length=128)
        load = [os.getloadavg()[0]]
        ms = latencies(runners, feeds, cli.repeats or (1 if cli.tiny else 5))
        load.append(os.getloadavg()[0])
    kept = next((s for s in export.schemes if s.name == export.chosen), None)
    report = {
        "benchmark": "embedder_inference",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": describe_machine(),
        "load_average": load,
        "student": cli.student or "teacher layers 0, 2, 4 (untrained)",
        "sentences": len(feeds),
        "passes": cli.repeats or (1 if cli.tiny else 5),
        "ms": ms,
        "int8_over_teacher": ms[TEACHER] / ms[INT8] if kept else None,
        "student_over_teacher": ms[TEACHER] / ms[STUDENT],
        "int8_scheme": export.chosen,
        "min_agreement": export.min_agreement,
        "gate_sentences": export.items,
        "nn_agreement": kept.agreement if kept else None,
        "mean_cosine": kept.mean_cosine if kept else None,
        "schemes": [
            {"name": s.name, "nn_agreement": s.agreement, "mean_cosine": s.mean_cosine} for s in export.schemes
        ],
    }
    print(json.dumps(report) if cli.json else table(report))


if __name__ == "__main__":
    run_script(main)
