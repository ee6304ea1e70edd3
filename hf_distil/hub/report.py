"""What a model card states, as typed fields.

The hub knows nothing of how these values are measured: the trainer (`DistillationTrainer.card_report`), the
export (`ExportReport.for_card`) and the recipes fill them in, and the cards render them. A field left None (or
empty) is unknown, and the card leaves it out rather than print "?" or "nan".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class HeldOut:
    """Masked-LM quality of one model on held-out text, as fractions (0.4, not 40)."""

    accuracy: float | None = None  # top-1 at [MASK]
    top5_accuracy: float | None = None
    perplexity: float | None = None
    teacher_agreement: float | None = None  # share of chosen positions where the top-1 equals the teacher's

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any]) -> HeldOut:
        """The fields found in a metrics mapping (e.g. `masked_lm_metrics`'s); other keys are ignored."""
        return cls(**{f.name: metrics.get(f.name) for f in dataclasses.fields(cls)})


@dataclass
class Speed:
    """Seconds per pass over `sentences` held-out sentences at batch 1: the whole masked LM, and the encoder alone
    (the DistilBERT paper's setting), of the teacher and the student."""

    sentences: int
    teacher_seconds: float | None = None
    student_seconds: float | None = None
    encoder_teacher_seconds: float | None = None
    encoder_student_seconds: float | None = None


@dataclass
class Masking:
    """How the training masked: the share of tokens chosen, and of those replaced by [MASK] or a random token."""

    probability: float
    mask_replace: float
    random_replace: float
    smoothing: float  # tokens chosen with weight count^-smoothing


@dataclass
class OnnxExport:
    """ONNX files beside the weights, in the layout Optimum and transformers.js read, and what the export
    measured of them."""

    task: str  # the pipeline: fill-mask, text-classification, question-answering or feature-extraction
    fp32_file: str
    fp32_max_abs_diff: float | None = None  # largest difference from PyTorch
    int8_file: str | None = None
    int8_scheme: str | None = None  # the quantisation scheme that passed the agreement gate
    int8_agreement: float | None = None  # share of fp32's answers the int8 model keeps (regression: correlation)
    int8_max_relative_error: float | None = None  # regression heads: largest error relative to fp32's largest score
    int8_mean_cosine: float | None = None  # sentence embedders: mean cosine of the int8 embeddings with fp32's
    agreement_measure: str | None = None  # what an answer is, e.g. "top-1 agreement at [MASK]"
    items: int | None = None  # answers compared
    int8_speedup: float | None = None  # the teacher in PyTorch fp32 over the int8 model, batch 1
    machine: str | None = None
    threads: int | None = None


@dataclass
class CardReport:
    """What the card of a distilled model states: the pair, how it was trained, and what the run measured."""

    teacher: str | None = None  # the name or folder the teacher was given as
    base_model: str | None = None  # the Hub model the teacher is or is built on (the card's base_model)
    datasets: list[str] | None = None  # Hub datasets the student learned from
    student_layers: int | None = None
    teacher_layers: int | None = None
    student_parameters: int | None = None
    teacher_parameters: int | None = None
    layer_map: list[int] | str | None = None  # teacher layers the student started from, or the student's origin
    vocabulary_size: int | None = None  # the student's tokens, when its vocabulary was trimmed from the teacher's
    teacher_vocabulary_size: int | None = None  # the teacher's tokens, when the student's were trimmed from them
    loss_weights: dict[str, float] = field(default_factory=dict)  # {term as the card names it: weight}, weight > 0
    temperature: float | None = None
    restrict_ce_to_mask: bool | None = None  # soft targets at masked tokens only, or at every non-pad token
    masking: Masking | None = None
    sequences_per_update: int | None = None
    optimizer_steps: int | None = None
    learning_rate: float | None = None
    log_history: list[dict[str, Any]] = field(default_factory=list)  # Trainer's, for the loss plot
    eval_dataset: str | None = None
    teacher_results: HeldOut = field(default_factory=HeldOut)
    student_results: HeldOut = field(default_factory=HeldOut)
    speed: Speed | None = None
    hardware: str | None = None
    train_seconds: float | None = None
    onnx: OnnxExport | None = None


@dataclass
class Score:
    """A model's held-out score over seeds."""

    label: str
    mean: float
    sd: float


@dataclass
class CpuTime:
    """Milliseconds per example of the teacher and the student in one runtime, at one batch size."""

    runtime: str  # e.g. "PyTorch fp32"
    batch_size: int
    threads: int
    teacher_ms: float
    student_ms: float


@dataclass
class BiLSTMCardReport:
    """What the card of a BiLSTM student (Tang et al. 2019) states: its shape, its training and its scores."""

    teacher: str | None = None
    base_model: str | None = None
    hidden_size: int | None = None  # units per direction
    classifier_size: int | None = None
    max_pooling: bool = True  # max over the states; else the final states of both directions
    pair_encoder: bool = False  # each text of a pair encoded alone
    kd_loss: str = "mse"  # "kl" (to the softened outputs) or "mse" (to the logits)
    gold_labels: bool = True  # cross-entropy on the gold labels as well
    transfer_examples: int | None = None
    augmentation: str | None = None  # how the transfer set grew, e.g. "+ Tang et al. rules"; None: it did not
    task: str | None = None
    metric: str | None = None
    seeds: int = 0
    scores: list[Score] = field(default_factory=list)
    teacher_parameters: int | None = None
    student_parameters: int | None = None
    teacher_non_embedding: int | None = None  # parameters outside the word embeddings
    student_non_embedding: int | None = None
    cpu_times: list[CpuTime] = field(default_factory=list)


@dataclass
class Similarity:
    """One model's correlation with human similarity ratings (Pearson and Spearman of cosine similarity)."""

    label: str  # e.g. "teacher", "student", "student before distillation"
    pearson: float | None = None
    spearman: float | None = None
    note: str | None = None  # why a model has no figures (e.g. a baseline that could not be built)


@dataclass
class EmbeddingCardReport(CardReport):
    """What the card of a distilled sentence embedder states: a distilled model's card, less the masked-LM settings
    and results, plus its pooling and its scores on human similarity ratings and against the teacher."""

    pooling: str | None = None  # e.g. "mean pooling, L2-normalised"
    max_seq_length: int | None = None
    similarity_dataset: str | None = None  # the human ratings, e.g. "Lee, Pincombe & Welsh (2005)"
    similarity: list[Similarity] = field(default_factory=list)
    agreement_sentences: int | None = None  # held-out sentences the agreement is measured on
    mean_cosine: float | None = None  # between the student's and the teacher's embeddings
    neighbour_agreement: float | None = None  # share of sentences with the same nearest neighbour under both
