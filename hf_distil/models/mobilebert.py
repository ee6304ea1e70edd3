"""A MobileBERT-shaped student (Sun et al. 2020, arXiv:2004.02984): transformers' `MobileBertForMaskedLM`, deep
and thin, in a configuration small enough to train on a CPU, for the library's own distillation terms.

What is MobileBERT's here: the architecture (bottlenecks around each layer, stacked feed-forward networks, no
LayerNorm, 128-wide word embeddings widened by a trigram convolution, the LM head tied to them) and the idea of
matching the teacher layer by layer. What is not: MobileBERT's teacher is IB-BERT, a BERT-large with inverted
bottlenecks of the student's width, trained for the purpose; its knowledge transfer matches feature maps and
attention maps layer by layer, progressively, before pre-training distillation. No such teacher exists offline, so
this student learns from an ordinary teacher with hf_distil's terms: soft targets (L_ce), masked LM (L_mlm), and
TinyBERT's hidden-state MSE through the trainer's learned width projection, since the student is narrower.

The word embeddings start from the teacher's, projected onto their `embedding_size` principal directions (an
addition of ours: MobileBERT pre-trains its embeddings from scratch; the other weights start random).
"""

from __future__ import annotations

import torch
from transformers import MobileBertConfig, MobileBertForMaskedLM, PreTrainedModel

from .layer_map import PROVENANCE_KEY

# Defaults: MobileBERT's widths halved where a CPU needs it (hidden 512 -> 256) and its depth cut to the
# teacher's (24 layers -> 6 for the shipped MiniLM); the bottleneck (128), the 4 stacked feed-forward networks,
# 4 heads and the 128-wide embeddings are MobileBERT's.
SMALL = dict(
    hidden_size=256,
    intra_bottleneck_size=128,
    intermediate_size=512,
    num_feedforward_networks=4,
    num_attention_heads=4,
    embedding_size=128,
)


def principal_embeddings(embeddings: torch.Tensor, width: int) -> torch.Tensor:
    """(V, width): each centred row of `embeddings` (V, H) in the basis of their `width` principal directions,
    which keeps the most variance any `width`-dimensional linear map can."""
    centred = embeddings.float() - embeddings.float().mean(dim=0)
    _, _, directions = torch.linalg.svd(centred, full_matrices=False)  # (H, H), rows by decreasing variance
    return centred @ directions[:width].T


def mobilebert_student(teacher: PreTrainedModel, num_layers: int | None = None, **config) -> MobileBertForMaskedLM:
    """A MobileBERT-shaped masked LM for `teacher`'s tokenizer: `num_layers` deep (default the teacher's), with
    `SMALL` widths unless `config` says otherwise (any MobileBertConfig field)."""
    tc = teacher.config
    student_config = MobileBertConfig(
        vocab_size=tc.vocab_size,
        max_position_embeddings=tc.max_position_embeddings,
        type_vocab_size=getattr(tc, "type_vocab_size", 2),
        pad_token_id=tc.pad_token_id,
        num_hidden_layers=num_layers or tc.num_hidden_layers,
        **{**SMALL, **config},
    )
    student = MobileBertForMaskedLM(student_config)
    setattr(
        student.config,
        PROVENANCE_KEY,
        {
            "teacher": tc.name_or_path or None,
            "teacher_num_layers": tc.num_hidden_layers,
            "teacher_parameters": teacher.num_parameters(),
        },
    )
    with torch.no_grad():
        word, teachers = student.get_input_embeddings().weight, teacher.get_input_embeddings().weight
        # A teacher narrower than the embeddings has fewer principal directions: they fill the first columns,
        # and the rest keep their random start.
        width = min(word.shape[1], teachers.shape[1])
        word[:, :width].copy_(principal_embeddings(teachers, width))
    return student
