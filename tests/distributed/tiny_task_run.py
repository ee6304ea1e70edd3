"""Two SGD updates of TaskDistillationTrainer on 8 fixed examples, three without a gold label; launched by
test_task_distributed.py.

    python tests/distributed/tiny_task_run.py OUT                                                  # 1 process × 8
    accelerate launch --config_file ds_configs/cpu_2proc.yaml tests/distributed/tiny_task_run.py OUT   # 2 × 4

Each update covers the 8 examples; the 3 unlabelled ones cannot split evenly over 2 processes, so per-process means
would differ from the global one. Every rank writes a checksum of its student; rank 0 also the weights and the log.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import datasets
import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertForSequenceClassification

from hf_distil import TaskDistillationArguments, TaskDistillationTrainer


def fixed_examples(vocab: int = 50, n: int = 8, length: int = 12) -> datasets.Dataset:
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(n):
        ids = torch.randint(5, vocab, (length,), generator=g)
        mask = (torch.arange(length) < length - i).long()  # varying padding
        label = -100 if i in (1, 2, 5) else i % 3
        rows.append({"input_ids": (ids * mask).tolist(), "attention_mask": mask.tolist(), "labels": label})
    return datasets.Dataset.from_list(rows)


def stack(features: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor([f[k] for f in features]) for k in features[0]}


def main(out: Path) -> None:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=3,
    )
    teacher, student = BertForSequenceClassification(config), BertForSequenceClassification(config)
    with torch.no_grad():
        teacher.classifier.weight.mul_(20)  # a confident teacher: the KD term matters
    args = TaskDistillationArguments(
        output_dir=str(out / "trainer"),
        report_to="none",
        use_cpu=True,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        per_device_train_batch_size=8 // int(os.environ.get("WORLD_SIZE", "1")),
        optim="sgd",
        learning_rate=0.5,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        disable_tqdm=True,
    )
    trainer = TaskDistillationTrainer(
        model=student, teacher_model=teacher, args=args, train_dataset=fixed_examples(), data_collator=stack
    )
    trainer.train()
    local = trainer.accelerator.unwrap_model(trainer.model)
    rank = trainer.args.process_index
    if rank == 0:
        save_file({k: v.detach().clone() for k, v in local.state_dict().items()}, str(out / "student.safetensors"))
        (out / "log.json").write_text(json.dumps(trainer.state.log_history))
    checksum = sum(float(p.detach().double().sum()) for p in local.parameters())
    (out / f"rank-{rank}.json").write_text(json.dumps({"checksum": checksum}))
    trainer.accelerator.wait_for_everyone()  # closed as the recipes close it
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
