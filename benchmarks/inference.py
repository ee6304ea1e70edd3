"""The paper's Table 3: parameters and inference time of teacher and student. Prints one JSON line.

    python benchmarks/inference.py                                  # shipped teacher vs its 3-layer student
    python benchmarks/inference.py --student outputs/distil_bert    # a distilled student
    python benchmarks/inference.py --tiny                           # tiny models built in code (CI)

Each setting (encoder at batch 1 and 32 as in the paper, the full masked LM at batch 1; on CPU, and on
CUDA when present) times a full pass over the same
sentences for both models, alternating teacher and student within each repeat; the ratio of medians
is reported, so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import json

import torch
from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM

from hf_distil import init_student_from_teacher
from hf_distil.errors import run_script
from hf_distil.evaluation import relative_speed


def sentences(tiny: bool, count: int, tokenizer=None) -> list[list[int]]:
    if tiny:
        g = torch.Generator().manual_seed(0)
        return [torch.randint(5, 1000, (int(n),), generator=g).tolist() for n in torch.randint(8, 40, (count,), generator=g)]
    from hf_distil.data import tokenize_and_chunk, wikipedia_splits

    return tokenize_and_chunk(wikipedia_splits()["test"], tokenizer).select(range(count))["input_ids"]


def batches(ids: list[list[int]], size: int, device: str) -> list[dict[str, torch.Tensor]]:
    out = []
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        length = max(len(x) for x in chunk)
        input_ids = torch.tensor([x + [0] * (length - len(x)) for x in chunk], device=device)
        mask = torch.tensor([[1] * len(x) + [0] * (length - len(x)) for x in chunk], device=device)
        out.append({"input_ids": input_ids, "attention_mask": mask})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", help="a saved student; default: extracted from the teacher, one layer of two")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--sentences", type=int, default=None, help="default 100 (--tiny: 16)")
    parser.add_argument("--repeats", type=int, default=3)
    cli = parser.parse_args()
    count = cli.sentences or (16 if cli.tiny else 100)
    if cli.tiny:
        teacher, tokenizer = BertForMaskedLM(BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128)), None
    else:
        from hf_distil.teachers import load_default_teacher

        teacher, tokenizer = load_default_teacher()
    student = AutoModelForMaskedLM.from_pretrained(cli.student) if cli.student else init_student_from_teacher(teacher, layers="even")
    ids = sentences(cli.tiny, count, tokenizer)
    report = {
        "benchmark": "inference", "torch": torch.__version__, "threads": torch.get_num_threads(), "sentences": count,
        "params": {"teacher": teacher.num_parameters(), "student": student.num_parameters()},
        "layers": {"teacher": teacher.config.num_hidden_layers, "student": getattr(student.config, "n_layers", student.config.num_hidden_layers)},
    }
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        teacher.to(device), student.to(device)
        # The paper times the encoder (its tasks put a small head on it); the MLM head's 30522-word
        # projection at every token is reported apart, since for small encoders it dominates.
        for size in (1, 32):
            timing = relative_speed(teacher.base_model, student.base_model, batches(ids, size, device), repeats=cli.repeats)
            report[f"{device}_encoder_batch_{size}"] = {k: round(v, 6) for k, v in timing.items()}
        timing = relative_speed(teacher, student, batches(ids, 1, device), repeats=cli.repeats)
        report[f"{device}_with_mlm_head_batch_1"] = {k: round(v, 6) for k, v in timing.items()}
    report["param_ratio"] = round(report["params"]["student"] / report["params"]["teacher"], 3)
    print(json.dumps(report))


if __name__ == "__main__":
    run_script(main)
