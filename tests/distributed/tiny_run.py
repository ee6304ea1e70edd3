"""One SGD step of DistillationTrainer on a fixed, pre-masked batch of 8; launched by test_distributed.py.

    python tests/distributed/tiny_run.py OUT [narrow]             # one process, batch 8 (narrow: a half-width student)
    accelerate launch --config_file ds_configs/cpu_2proc.yaml tests/distributed/tiny_run.py OUT   # 2 × 4

Every rank writes a checksum of its student weights and the size of its teacher (after training, and the most
it held at once during a forward); rank 0 also writes the weights and the log. Every run adds the pooled
sentence-embedding terms to the triple loss.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import datasets
import torch
from safetensors.torch import save_file
from torch import nn
from transformers import (
    BertConfig,
    BertForMaskedLM,
    DistilBertConfig,
    DistilBertForMaskedLM,
)

from hf_distil import DistillationArguments, DistillationTrainer, count_parameters, init_student_from_teacher


def fixed_batch(vocab: int = 50, n: int = 8, length: int = 16) -> datasets.Dataset:
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(n):
        real = length - i  # varying padding: per-rank means would differ from the global one
        ids = torch.randint(5, vocab, (length,), generator=g)
        ids[real:] = 0
        mask = (torch.arange(length) < real).long()
        chosen = (torch.rand(length, generator=g) < 0.3) & mask.bool()
        chosen[1] = True
        rows.append(
            {
                "input_ids": ids.masked_fill(chosen, 4).tolist(),
                "attention_mask": mask.tolist(),
                "labels": torch.where(chosen, ids, -100).tolist(),
            }
        )
    return datasets.Dataset.from_list(rows)


def stack(features: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor([f[k] for f in features]) for k in features[0]}


def main(out: Path, narrow: bool) -> None:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    teacher = BertForMaskedLM(config)
    if narrow:  # half the teacher's width: the hidden-state MSE needs the learned projection
        student = DistilBertForMaskedLM(
            DistilBertConfig(
                vocab_size=50,
                dim=16,
                n_layers=2,
                n_heads=4,
                hidden_dim=32,
                max_position_embeddings=32,
                dropout=0.0,
                attention_dropout=0.0,
            )
        )
    else:
        student = init_student_from_teacher(teacher, layers=[0, 3])
    args = DistillationArguments(
        output_dir=str(out / "trainer"),
        report_to="none",
        max_steps=1,
        logging_steps=1,
        save_strategy="no",
        target_batch_size=8,
        per_device_train_batch_size=8 // int(os.environ.get("WORLD_SIZE", "1")),
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        max_grad_norm=0.5 if narrow else 0.0,
        disable_tqdm=True,
        # narrow: clipping on (0.5 is below this step's norm), over the student and the projection together
        **({"alpha_cos": 0.0, "alpha_hidden_mse": 1.0, "intermediate_layers": "pkd_skip"} if narrow else {}),
        # Sentence-embedding terms beside the triple loss: the in-batch similarity KL runs over the 8 sequences
        # gathered from every process (GradCache); a narrow student's embeddings go through the projection.
        alpha_embedding_mse=1.0,
        alpha_embedding_cos=1.0,
        alpha_similarity_kl=1.0,
        similarity_temperature=0.1,
    )
    trainer = DistillationTrainer(
        model=student, teacher_model=teacher, args=args, train_dataset=fixed_batch(), data_collator=stack
    )
    teacher_module = trainer.accelerator.unwrap_model(trainer.teacher)
    peak = [0]  # the most teacher weights this rank held at once, measured as each teacher layer starts

    def measure(*_: object) -> None:
        peak[0] = max(peak[0], sum(_local(p).numel() for p in teacher_module.parameters()))

    for layers in teacher_module.modules():
        if isinstance(layers, nn.ModuleList):
            for block in layers:
                block.register_forward_pre_hook(measure)  # after the sharding engine's own hooks: layer gathered
    trainer.train()
    weights = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    rank = trainer.args.process_index
    if weights is not None and rank == 0:
        if trainer.hidden_projection is not None:
            weights = {**weights, **{f"projection.{k}": v for k, v in trainer.hidden_projection.state_dict().items()}}
        save_file({k: v.detach().clone() for k, v in weights.items()}, str(out / "student.safetensors"))
        (out / "log.json").write_text(json.dumps(trainer.state.log_history))
    local = trainer.accelerator.unwrap_model(trainer.model)
    teacher_params = list(teacher_module.parameters())
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    report = {
        "checksum": sum(
            float(_local(p).detach().double().sum())
            for p in [*local.parameters(), *(trainer.hidden_projection or nn.Linear(1, 1)).parameters()]
        ),
        # Under ZeRO-3 a rank holds only shards: the local tensors of a partitioned model are empty; under FSDP2
        # each parameter is a DTensor whose local tensor is this rank's shard.
        "teacher_local_numel": sum(_local(p).numel() for p in teacher_params),
        "teacher_numel": count_parameters(teacher_module),
        "teacher_peak_local_numel": peak[0],
        "teacher_trained": any(p.requires_grad or p.grad is not None or id(p) in optimized for p in teacher_params),
    }
    (out / f"rank-{rank}.json").write_text(json.dumps(report))
    trainer.accelerator.wait_for_everyone()  # closed as the recipe closes it (see recipes/distil_bert.py)
    trainer.accelerator.end_training()


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a tensor: the shard of an FSDP2 DTensor, the tensor itself otherwise."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


if __name__ == "__main__":
    main(Path(sys.argv[1]), narrow=sys.argv[2:] == ["narrow"])
