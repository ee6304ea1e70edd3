"""Build the offline default teacher: all-MiniLM-L6-v2 + a BERT MLM head, adapted to masked LM on Wikipedia.

    python recipes/build_teacher.py --num_train_epochs 3  # ~50 min on 2 CPU cores; writes the shipped file
    python recipes/build_teacher.py --max_steps 2 --output /tmp/t.safetensors --eval_seeds 0   # smoke run

The story: load the packaged encoder (no MLM head ships with it) → put a BERT MLM head on it, decoder
tied to the word embeddings, output bias started at the log unigram frequencies (so step 0 already
predicts frequent words) → freeze the embeddings (the shipped file then holds only the encoder layers
and head transform) → train with masked LM alone through DistillationTrainer (no teacher) on the train
articles → measure top-1/top-5 at [MASK] on the held-out articles → write fp16 safetensors and its sha256.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser, get_linear_schedule_with_warmup, set_seed
from transformers.utils import logging

from hf_distil import DataCollatorForDistillation, DistillationArguments, DistillationTrainer, token_counts
from hf_distil.cli import run_script
from hf_distil.data import HELD_OUT_ARTICLES, tokenize_and_chunk, wikipedia_splits
from hf_distil.evaluation import masked_lm_metrics
from hf_distil.teachers import minilm

logger = logging.get_logger("build_teacher")


@dataclass
class BuildArguments:
    output: str = field(
        default=str(minilm.DELTA_FILE),
        metadata={"help": "Where to write the fp16 safetensors of the trained tensors."},
    )
    num_train_epochs: float = field(
        default=4.0, metadata={"help": "Passes over the train articles (returns shrink after ~3.5)."}
    )
    max_steps: int = field(
        default=-1, metadata={"help": "Stop after this many updates (overrides epochs; for smoke runs)."}
    )
    batch_size: int = field(
        default=64, metadata={"help": "Sequences per update (paragraphs of ~65 tokens, grouped by length)."}
    )
    encoder_lr: float = field(default=1e-4, metadata={"help": "Learning rate of the pretrained encoder layers."})
    head_lr: float = field(
        default=1e-3, metadata={"help": "Learning rate of the new MLM head (transform, LayerNorm, bias)."}
    )
    max_length: int = field(default=128, metadata={"help": "Longest sequence; longer paragraphs are cut into chunks."})
    seed: int = field(default=0, metadata={"help": "Seed of initialisation, data order and masks."})
    eval_seeds: list[int] = field(
        default_factory=lambda: [0, 1, 2], metadata={"help": "Fixed mask draws of the held-out evaluation."}
    )


def main() -> None:
    (build,) = HfArgumentParser(BuildArguments).parse_args_into_dataclasses()
    logging.set_verbosity_warning()
    logger.setLevel("INFO")
    set_seed(build.seed)
    started = time.time()

    # Corpus: paragraphs of the gensim Wikipedia excerpt, held-out articles apart.
    model, tokenizer = minilm.minilm_with_fresh_head()
    splits = wikipedia_splits()
    train = tokenize_and_chunk(splits["train"], tokenizer, build.max_length)
    held_out = tokenize_and_chunk(splits["test"], tokenizer, build.max_length)
    logger.info(f"train {len(train)} sequences, held-out {len(held_out)} ({', '.join(HELD_OUT_ARTICLES)})")

    # Head: output bias at log unigram frequencies; embeddings frozen (and the tied decoder with them).
    counts = token_counts(train, tokenizer).double()
    with torch.no_grad():
        model.cls.predictions.bias.copy_((counts + 1).log() - (counts + 1).sum().log())
    model.bert.embeddings.requires_grad_(False)
    encoder = [p for p in model.bert.encoder.parameters()]
    head = [model.cls.predictions.bias, *model.cls.predictions.transform.parameters()]

    before = masked_lm_metrics(model, held_out, tokenizer, seeds=build.eval_seeds)
    logger.info(f"held-out before training (head bias only): {before}")

    # Train: masked LM alone, through our collator (uniform 15%, 80/10/10) and Trainer.
    args = DistillationArguments(
        output_dir="outputs/build_teacher",
        alpha_ce=0.0,
        alpha_cos=0.0,
        alpha_mlm=1.0,
        per_device_train_batch_size=build.batch_size,
        num_train_epochs=build.num_train_epochs,
        max_steps=build.max_steps,
        train_sampling_strategy="group_by_length",
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        seed=build.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_drop_last=True,
    )
    steps = args.max_steps if args.max_steps > 0 else int(build.num_train_epochs * (len(train) // build.batch_size))
    optimizer = torch.optim.AdamW(
        [{"params": encoder, "lr": build.encoder_lr}, {"params": head, "lr": build.head_lr}], weight_decay=0.01
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.05 * steps), steps)
    trainer = DistillationTrainer(
        model=model,
        args=args,
        train_dataset=train,
        data_collator=DataCollatorForDistillation(tokenizer, seed=build.seed),
        optimizers=(optimizer, scheduler),
    )
    trainer.train()

    # Measure, then ship the trained tensors.
    after = masked_lm_metrics(model, held_out, tokenizer, seeds=build.eval_seeds)
    output = Path(build.output)
    digest = minilm.save_delta(model, output)
    report = {
        "held_out_before": before,
        "held_out_after": after,
        "sha256": digest,
        "size_bytes": output.stat().st_size,
        "build_seconds": round(time.time() - started),
        "train_sequences": len(train),
        "held_out_sequences": len(held_out),
        "optimizer_steps": trainer.state.global_step,
        "held_out_articles": list(HELD_OUT_ARTICLES),
    }
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    logger.info(json.dumps(report, indent=2))


if __name__ == "__main__":
    run_script(main)
