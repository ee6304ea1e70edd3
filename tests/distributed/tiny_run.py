"""One SGD step of DistillationTrainer on a fixed, pre-masked batch of 8; launched by test_distributed.py.

    python tests/distributed/tiny_run.py OUT [narrow|pooled]      # one process, batch 8 (narrow: a half-width student;
                                                                  # pooled: sentence-embedding terms on raw triplets)
    accelerate launch --config_file ds_configs/cpu_2proc.yaml tests/distributed/tiny_run.py OUT   # 2 × 4

Every rank writes a checksum of its student weights and the size of its teacher (after training, and the most
it held at once during a forward); rank 0 also writes the weights and the log.
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
    BertModel,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForMaskedLM,
)

from hf_distil import DistillationArguments, DistillationTrainer, init_student_from_teacher
from hf_distil.models.pooling import Pooling


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


def teacher_config(vocab_size: int) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


WORDS = "the a cat dog sat ran on mat big small house tree red blue and is market fell rose rain sun".split()


def pooled_setup() -> tuple[nn.Module, nn.Module, dict, dict]:
    """Headless BERT encoders, a WordPiece tokenizer and 8 raw (query, positive, negative) rows: the pooled terms,
    the in-batch similarity KL gathered over the processes."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    teacher = BertModel(teacher_config(len(vocab)), add_pooling_layer=False)
    with torch.no_grad():  # sharper attention: sentences that differ from one another
        for layer in teacher.encoder.layer:
            layer.attention.self.query.weight.mul_(5)
            layer.attention.self.key.weight.mul_(5)
    student = init_student_from_teacher(teacher, layers=[0, 3], architecture="same")
    with torch.no_grad():
        student.encoder.layer[1].attention.self.value.weight.normal_(0, 0.5)  # far from the teacher
    g = torch.Generator().manual_seed(0)
    texts = [
        " ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (int(n),), generator=g))
        for n in torch.randint(3, 12, (24,), generator=g)
    ]
    data = datasets.Dataset.from_dict({"query": texts[:8], "positive": texts[8:16], "negative": texts[16:]})
    settings = {
        "alpha_ce": 0.0,
        "alpha_mlm": 0.0,
        "alpha_cos": 0.0,
        "alpha_embedding_mse": 1.0,
        "alpha_embedding_cos": 1.0,
        "alpha_similarity_kl": 1.0,
        "similarity_temperature": 0.1,
        "alpha_margin_mse": 0.1,
        "alpha_hidden_mse": 1.0,
    }
    trainer_kwargs = {
        "train_dataset": data,
        "processing_class": tokenizer,
        "pooling": Pooling("mean", normalize=False),
    }
    return teacher, student, settings, trainer_kwargs


def main(out: Path, mode: str) -> None:
    torch.manual_seed(0)
    narrow = mode == "narrow"
    teacher = BertForMaskedLM(teacher_config(50))
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
    settings = {"alpha_cos": 0.0, "alpha_hidden_mse": 1.0, "intermediate_layers": "pkd_skip"} if narrow else {}
    trainer_kwargs = {"train_dataset": fixed_batch(), "data_collator": stack}
    if mode == "pooled":
        teacher, student, settings, trainer_kwargs = pooled_setup()
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
        **settings,
    )
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args, **trainer_kwargs)
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
        "teacher_numel": sum(getattr(p, "ds_numel", p.numel()) for p in teacher_params),
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
    main(Path(sys.argv[1]), mode=sys.argv[2] if len(sys.argv) > 2 else "")
