"""Vocabulary trimming: a student with a trimmed vocabulary against an untrimmed one distilled at the same budget.

    python recipes/distil_bert.py --max_steps 60 --save_strategy no --output_dir outputs/full
    python recipes/distil_bert.py --max_steps 60 --save_strategy no --vocabulary_size 8000 --output_dir outputs/v8000
    python benchmarks/vocabulary.py --student outputs/full --trimmed outputs/v8000
    python benchmarks/vocabulary.py --tiny     # tiny random models, the real tokenizer (CI)
    python benchmarks/vocabulary.py --tokens 8000 12000 [--prior_weight 0]   # the tokenizers only, no training

Side by side, in one run: tokens and [UNK] rate on gensim's lee.cor (news that no run trains on); held-out top-1 at
[MASK] on the Wikipedia held-out articles, at the positions where both tokenisations agree (the same characters in
one piece on both sides; their share is printed), for the teacher and both students on the same masked positions;
the probability mass the teacher puts outside the kept vocabulary there (what L_ce's renormalisation removes, at
temperature 1); parameters and safetensors size. The ONNX sizes and speeds are in
`benchmarks/inference.py --deployment --trimmed_student`. Ends with one JSON line.

--tokens chooses the vocabulary as the recipe does (from its default training text, the Wikipedia excerpt's training
articles) at each size and reports only the tokenizers: growth and [UNK] on lee.cor, on lee_background.cor (the news
the teacher prior's weight was chosen on) and on the held-out Wikipedia articles; --prior_weight 0 is the choice
without the teacher's order.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM

from hf_distil import init_student_from_teacher, trim_vocabulary
from hf_distil.cli import run_script
from hf_distil.data import wikipedia_splits
from hf_distil.deploy import held_out_sentences
from hf_distil.models import PRIOR_WEIGHT, choose_vocabulary, kept_teacher_ids, mass_outside, trim_tokenizer
from hf_distil.teachers import load_default_teacher, packaged_encoder_path

MASK_SHARE = 0.15
MAX_LENGTH = 128


def news(name: str) -> list[str]:
    from gensim.test.utils import datapath

    with open(datapath(name), encoding="latin-1") as stream:
        return [line.strip() for line in stream if line.strip()]


def token_figures(full, trimmed, texts: list[str]) -> dict:
    """Tokens per text with each tokenizer, the growth, and each [UNK] rate."""
    a, b = (t(texts, add_special_tokens=False)["input_ids"] for t in (full, trimmed))
    count_a, count_b = sum(map(len, a)), sum(map(len, b))
    return {
        "texts": len(texts),
        "tokens_per_text": [round(count_a / len(texts), 2), round(count_b / len(texts), 2)],
        "token_growth": round(count_b / count_a - 1, 4),
        "unk_rate": [
            round(sum(x.count(full.unk_token_id) for x in a) / count_a, 5),
            round(sum(x.count(trimmed.unk_token_id) for x in b) / count_b, 5),
        ],
    }


def _spans(tokenizer, sentence: str) -> tuple[list[int], dict[tuple[int, int], int]]:
    encoded = tokenizer(sentence, truncation=True, max_length=MAX_LENGTH, return_offsets_mapping=True)
    special = set(tokenizer.all_special_ids)
    spans = {
        tuple(o): i
        for i, (o, t) in enumerate(zip(encoded["offset_mapping"], encoded["input_ids"]))
        if t not in special
    }
    return encoded["input_ids"], spans


@torch.no_grad()
def masked_top1(teacher, student, trimmed, full_tok, trimmed_tok, sentences: list[str], seed: int = 0) -> dict:
    """Top-1 at [MASK] of the three models on the same masked pieces, chosen among the positions where both
    tokenisations agree; and the teacher's mass outside the kept vocabulary, fed the trimmed pieces as in training."""
    rng = random.Random(seed)
    kept = torch.tensor(kept_teacher_ids(trimmed))
    correct = {"teacher": 0, "student": 0, "trimmed": 0}
    masked = agreeing = positions = 0
    outside_masked, outside_all = [], []
    for sentence in sentences:
        ids_a, spans_a = _spans(full_tok, sentence)
        ids_b, spans_b = _spans(trimmed_tok, sentence)
        both = sorted(set(spans_a) & set(spans_b))
        positions += len(spans_a)
        agreeing += len(both)
        if not both:
            continue
        chosen = rng.sample(both, max(1, round(MASK_SHARE * len(both))))
        a, b = torch.tensor([ids_a]), torch.tensor([ids_b])
        at_a = torch.tensor([spans_a[s] for s in chosen])
        at_b = torch.tensor([spans_b[s] for s in chosen])
        a[0, at_a], b[0, at_b] = full_tok.mask_token_id, trimmed_tok.mask_token_id
        labels_a, labels_b = torch.tensor(ids_a)[at_a], torch.tensor(ids_b)[at_b]
        assert kept[labels_b].tolist() == labels_a.tolist()  # the same token on both sides
        correct["teacher"] += int((teacher(input_ids=a).logits[0, at_a].argmax(-1) == labels_a).sum())
        correct["student"] += int((student(input_ids=a).logits[0, at_a].argmax(-1) == labels_a).sum())
        correct["trimmed"] += int((trimmed(input_ids=b).logits[0, at_b].argmax(-1) == labels_b).sum())
        seen = teacher(input_ids=kept[b]).logits[0]  # the teacher as L_ce reads it: the student's pieces
        outside = mass_outside(seen, kept)
        outside_masked.append(outside[at_b])
        outside_all.append(outside[1:-1])
        masked += len(chosen)
    return {
        "masked_positions": masked,
        "agreeing_share": round(agreeing / positions, 4),
        "top1": {name: round(c / masked, 4) for name, c in correct.items()},
        "teacher_mass_outside": {
            "masked": round(float(torch.cat(outside_masked).mean()), 4),
            "every_token": round(float(torch.cat(outside_all).mean()), 4),
        },
    }


def token_growth(sizes: list[int], prior_weight: float) -> dict:
    """The recipe's choice from its default training text at each size, and what it does to unseen text."""
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_encoder_path()))
    splits = wikipedia_splits()
    texts = {
        "lee_cor": news("lee.cor"),
        "lee_background_cor": news("lee_background.cor"),
        "held_out_wikipedia": list(splits["test"]["text"]),
    }
    train = list(splits["train"]["text"])
    rows = {}
    for size in sizes:
        trimmed = trim_tokenizer(tokenizer, choose_vocabulary(tokenizer, train, size, prior_weight))
        rows[size] = {name: token_figures(tokenizer, trimmed, lines) for name, lines in texts.items()}
    return {"benchmark": "vocabulary_tokens", "prior_weight": prior_weight, "sizes": rows}


def token_table(report: dict) -> str:
    names = next(iter(report["sizes"].values())).keys()
    lines = [f"prior weight {report['prior_weight']}: token growth (trimmed [UNK] rate) against the full tokenizer"]
    lines.append(f"{'N':>6}  " + "  ".join(f"{name:>24}" for name in names))
    for size, row in report["sizes"].items():
        cells = (f"{100 * f['token_growth']:+.1f}% ({100 * f['unk_rate'][1]:.3f}%)" for f in row.values())
        lines.append(f"{size:>6}  " + "  ".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


def size_mb(folder: str | None) -> float | None:
    return round(sum(p.stat().st_size for p in Path(folder).glob("*.safetensors")) / 1e6, 2) if folder else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", help="an untrimmed distilled student (a recipe's output folder)")
    parser.add_argument("--trimmed", help="a student distilled with --vocabulary_size, at the same budget")
    parser.add_argument("--tiny", action="store_true", help="tiny random models, the real tokenizer (CI)")
    parser.add_argument("--sentences", type=int, default=None, help="held-out sentences (default 400; --tiny: 20)")
    parser.add_argument("--tokens", type=int, nargs="+", metavar="N", help="tokenizers only, at these sizes")
    parser.add_argument("--prior_weight", type=float, default=PRIOR_WEIGHT, help="with --tokens: the teacher prior's")
    cli = parser.parse_args()
    if cli.tokens:
        report = token_growth(cli.tokens, cli.prior_weight)
        print(token_table(report))
        print(json.dumps(report))
        return
    count = cli.sentences or (20 if cli.tiny else 400)
    if cli.tiny:
        full_tok = AutoTokenizer.from_pretrained(str(packaged_encoder_path()))
        torch.manual_seed(0)
        shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
        teacher = BertForMaskedLM(BertConfig(vocab_size=len(full_tok), **shape))
        student = init_student_from_teacher(teacher, layers=[0])
        trimmed, trimmed_tok, _ = trim_vocabulary(
            init_student_from_teacher(teacher, layers=[0]), full_tok, news("lee_background.cor")[:100], 2000
        )
    else:
        if not (cli.student and cli.trimmed):
            parser.error("pass --student and --trimmed (two recipe output folders), or --tiny")
        teacher, full_tok = load_default_teacher()
        student, trimmed = (AutoModelForMaskedLM.from_pretrained(f) for f in (cli.student, cli.trimmed))
        trimmed_tok = AutoTokenizer.from_pretrained(cli.trimmed)
    for model in (teacher, student, trimmed):
        model.eval()
    sentences = held_out_sentences()[:count]
    report = {
        "benchmark": "vocabulary",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "vocabulary": [student.config.vocab_size, trimmed.config.vocab_size],
        "params": [student.num_parameters(), trimmed.num_parameters()],
        "safetensors_mb": [size_mb(cli.student), size_mb(cli.trimmed)],
        "lee_cor": token_figures(full_tok, trimmed_tok, news("lee.cor")),
        "held_out": masked_top1(teacher, student, trimmed, full_tok, trimmed_tok, sentences),
    }
    report["param_ratio"] = round(report["params"][1] / report["params"][0], 4)
    print(table(report))
    print(json.dumps(report))


def table(report: dict) -> str:
    lee, held = report["lee_cor"], report["held_out"]
    top1 = held["top1"]
    rows = [
        ("vocabulary", *report["vocabulary"]),
        ("parameters (M)", *(f"{p / 1e6:.2f}" for p in report["params"])),
        ("safetensors (MB)", *report["safetensors_mb"]),
        ("lee.cor tokens per document", *lee["tokens_per_text"]),
        ("lee.cor [UNK] rate (%)", *(f"{100 * r:.3f}" for r in lee["unk_rate"])),
        ("held-out top-1 at [MASK] (%)", f"{100 * top1['student']:.1f}", f"{100 * top1['trimmed']:.1f}"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':<{width}}  {'untrimmed':>10}  {'trimmed':>10}"]
    lines += [f"{name:<{width}}  {a!s:>10}  {b!s:>10}" for name, a, b in rows]
    outside = held["teacher_mass_outside"]
    lines += [
        f"token growth on lee.cor: {100 * lee['token_growth']:.1f}%; parameters: {report['param_ratio']:.2f}x",
        f"top-1 on {held['masked_positions']} masked pieces where both tokenisations agree "
        f"({100 * held['agreeing_share']:.1f}% of the untrimmed pieces); teacher {100 * top1['teacher']:.1f}%",
        f"teacher mass outside the kept vocabulary: {100 * outside['masked']:.2f}% at [MASK], "
        f"{100 * outside['every_token']:.2f}% over every token",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_script(main)
