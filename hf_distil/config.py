"""Every knob of a distillation run, documented once (in each field's `help`)."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments
from transformers.utils import logging

from .data.masking import check_masking_settings
from .errors import UsageError
from .launch import accumulation_for, check_deepspeed_config, check_fsdp_launch, env_flag
from .losses.schedules import Schedule, check_schedules
from .losses.terms import HEAD_TERMS, LOSS_TERMS
from .models.layer_map import check_intermediate_layers

logger = logging.get_logger(__name__)


LOSS_WEIGHTS = tuple(term.weight_field for term in LOSS_TERMS)
TEACHER_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def loss_weights(args: TrainingArguments, scheduled: dict[str, float] | None = None) -> dict[str, float]:
    """{term name: weight} from the arguments' alpha_* values; `scheduled` (alpha_* → value) moves some of them."""
    scheduled = scheduled or {}
    return {term.name: scheduled.get(term.weight_field, getattr(args, term.weight_field)) for term in LOSS_TERMS}


@dataclass
class SoftTargetArguments:
    """The softening of teacher and student logits, one field shared by both trainers' arguments."""

    temperature: float = field(
        default=2.0,
        metadata={
            "help": "Softmax temperature applied to teacher and student logits in the soft-target KL (L_ce, and "
            "task distillation's kd_loss=kl); the term is scaled by T²."
        },
    )


@dataclass
class DistillationArguments(SoftTargetArguments, TrainingArguments):
    """TrainingArguments plus the distillation settings of DistilBERT (Sanh et al. 2019).

    > Parameters that control the loss: `temperature`, `alpha_*`, `intermediate_layers`, `relation_*`,
      `similarity_temperature`, `restrict_ce_to_mask`.
    > Parameters that control dynamic masking: `mlm_probability`, `mask_replace_prob`,
      `random_replace_prob`, `mlm_smoothing`, `whole_word_masking`.

    > [!NOTE]
    > The loss and masking defaults are those of DistilBERT's own run (reference `train.py`). The
    > optimisation defaults stay those of `TrainingArguments`; the recipes' YAML files set the paper's
    > (lr 5e-4, betas 0.9/0.98, eps 1e-6, warm-up 5%, clipping 5.0).
    """

    alpha_ce: float = field(
        default=5.0, metadata={"help": "Weight of L_ce, the KL between softened teacher and student distributions."}
    )
    alpha_mlm: float = field(
        default=2.0,
        metadata={"help": "Weight of L_mlm, the student's masked-LM cross-entropy on the masked positions."},
    )
    alpha_cos: float = field(
        default=1.0,
        metadata={
            "help": "Weight of L_cos, 1 - cosine between student and teacher last hidden states (non-pad tokens)."
        },
    )
    alpha_mse: float = field(
        default=0.0,
        metadata={
            "help": "Weight of L_mse, squared error between student and teacher logits, summed over the vocabulary."
        },
    )
    alpha_clm: float = field(
        default=0.0,
        metadata={
            "help": "Weight of L_clm, the next-token cross-entropy of a causal student (exclusive with alpha_mlm)."
        },
    )
    alpha_hidden_mse: float = field(
        default=0.0,
        metadata={
            "help": "Weight of TinyBERT's hidden-state MSE over the layer pairs of intermediate_layers "
            "(embeddings included)."
        },
    )
    alpha_attention_mse: float = field(
        default=0.0,
        metadata={
            "help": "Weight of TinyBERT's attention-map MSE over the mapped layers "
            "(probabilities; head counts must match)."
        },
    )
    attention_maps: str = field(
        default="probabilities",
        metadata={
            "help": "What alpha_attention_mse compares: 'probabilities' (eager attention's maps) or 'scores' "
            "(pre-softmax QKᵀ/√d as in TinyBERT, from each mapped layer's query and key projections; SDPA stays on). "
            "Either way only real (query, key) pairs count."
        },
    )
    alpha_pkd: float = field(
        default=0.0,
        metadata={"help": "Weight of BERT-PKD's loss: MSE of L2-normalised [CLS] states of the mapped layers."},
    )
    alpha_relation: float = field(
        default=0.0,
        metadata={
            "help": "Weight of MiniLMv2's self-attention relation loss: KL(teacher ‖ student) of the query-query, "
            "key-key and value-value relations of relation_teacher_layer and the student's last layer, averaged "
            "over the three, the relation heads and the real tokens (widths and head counts may differ)."
        },
    )
    relation_heads: int | None = field(
        default=None,
        metadata={
            "help": "Relation heads A_r of alpha_relation: Q, K and V are split anew into A_r heads of hidden/A_r "
            "units on each side, so A_r must divide both hidden sizes; default the teacher's attention heads."
        },
    )
    relation_teacher_layer: int = field(
        default=-1,
        metadata={
            "help": "Teacher layer whose relations alpha_relation distils, 1-based; negative counts from the end "
            "(-1, the default, is the last; MiniLMv2 takes an upper-middle layer of large teachers, e.g. -4)."
        },
    )
    alpha_embedding_mse: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the squared error between student and teacher sentence embeddings (pooled as the "
            "teacher's Sentence Transformers folder says, else mean and normalised), averaged over sentences and "
            "units; a narrower student's go through the learned width projection."
        },
    )
    alpha_embedding_cos: float = field(
        default=0.0,
        metadata={"help": "Weight of 1 - cosine between student and teacher sentence embeddings, over sentences."},
    )
    alpha_similarity_kl: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the in-batch similarity KL: each sentence's softmax over its cosines to the other "
            "sentences of the whole accumulated and gathered batch, divided by similarity_temperature, "
            "KL(teacher ‖ student), averaged over sentences. Costs one more student forward without grad."
        },
    )
    similarity_temperature: float = field(
        default=0.05,
        metadata={
            "help": "Temperature of alpha_similarity_kl's softmax over cosines (in [-1, 1]): 0.05, as contrastive "
            "training of embedders uses, makes sharp neighbour distributions; 1 leaves them nearly flat. The term "
            "is not scaled by T²."
        },
    )
    alpha_margin_mse: float = field(
        default=0.0,
        metadata={
            "help": "Weight of MarginMSE on (query, positive, negative) rows (columns query, positive, negative): "
            "squared difference of the student's and the teacher's margins sim(q, p) - sim(q, n), sim the dot "
            "product of sentence embeddings, averaged over rows."
        },
    )
    intermediate_layers: list[list[int]] | str | None = field(
        default="tinybert",
        metadata={
            "help": "Student→teacher layer pairs for the intermediate losses: tinybert (layer i ↔ round(i·N/M), "
            "embeddings included), pkd_skip or pkd_last (BERT-PKD), init (each student layer ↔ the teacher layer "
            "it was copied from), or explicit (student, teacher) pairs: [[1, 2], [2, 4]] in Python and YAML, "
            "--intermediate_layers 1:2 2:4 on the command line (0 is the embedding output)."
        },
    )
    teacher_weights: list[float] | None = field(
        default=None,
        metadata={
            "help": "With several teachers: weights of their softened distributions in L_ce/L_mse, one per "
            "teacher: [0.7, 0.3] in Python and YAML, --teacher_weights 0.7 0.3 on the command line (default equal). "
            "L_cos and the intermediate terms use the first teacher."
        },
    )
    teacher_dtype: str | None = field(
        default=None,
        metadata={
            "help": "Cast the teachers to float16 or bfloat16 (float32 to upcast): half the teacher's memory and "
            "a faster forward on GPUs; the loss still runs in fp32. Default: the dtype it was loaded in. Under "
            "DeepSpeed the engine's fp16/bf16 setting decides.",
            "choices": list(TEACHER_DTYPES),
        },
    )
    loss_schedules: dict[str, list | Schedule] | None = field(
        default=None,
        metadata={
            "help": "Schedules for the temperature and loss weights over training: {name: [start, end, kind]} "
            "with kind constant, linear (default) or cosine: a mapping in Python and YAML, JSON text on the command "
            "line, "
            'e.g. --loss_schedules \'{"temperature": [4, 1, "cosine"], "alpha_mlm": [0, 2]}\'.'
        },
    )
    restrict_ce_to_mask: bool = field(
        default=False,
        metadata={
            "help": "Compute L_ce and L_mse at the masked positions only (default: every non-pad token). "
            "The LM heads then run only at those rows, which saves time and memory."
        },
    )
    mlm_probability: float = field(
        default=0.15,
        metadata={"help": "Share of real tokens chosen for prediction in each batch (drawn anew per batch)."},
    )
    mask_replace_prob: float = field(default=0.8, metadata={"help": "Share of chosen tokens replaced by [MASK]."})
    random_replace_prob: float = field(
        default=0.1,
        metadata={"help": "Share of chosen tokens replaced by a uniformly random token; the rest stay unchanged."},
    )
    mlm_smoothing: float = field(
        default=0.7,
        metadata={
            "help": "Tokens are chosen with weight max(count, 1)^-mlm_smoothing when token counts are given "
            "(rare tokens favoured); 0 gives uniform choice."
        },
    )
    whole_word_masking: bool = field(
        default=False,
        metadata={"help": "Choose whole words: a chosen word-piece brings the pieces of its word along."},
    )
    cpu_keep_freed_memory: bool = field(
        default=False,
        metadata={
            "help": "On a CPU, keep freed memory in the process (glibc mallopt, process-wide: off by default, "
            "the recipe's YAML turns it on) instead of returning large blocks to the kernel: saves the page "
            "faults of the vocabulary-sized tensors every step; resident memory "
            "then stays at its peak."
        },
    )
    target_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Sequences per update (the paper used up to 4096): sets gradient_accumulation_steps from "
            "per_device_train_batch_size × world size, with a warning when it cannot be met exactly."
        },
    )
    # transformers 5 dropped this TrainingArguments flag; the recipes need it to start afresh on purpose.
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start afresh in an --output_dir that holds another run's model or checkpoints: its "
            "checkpoint-* folders are deleted first, its model is replaced at the end. Without it such a "
            "folder is refused, and a run only resumes checkpoints made with the same loss settings."
        },
    )

    def __post_init__(self) -> None:
        # Several processes on a machine without any accelerator: Accelerate forms a gloo (MULTI_CPU) group only
        # when asked for the CPU, and its multi-process launcher does not pass a config's `use_cpu: true` on to the
        # processes (only its one-process launcher sets ACCELERATE_USE_CPU); without this each process would
        # silently train alone. Said in the log, not done behind the user's back.
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available() and not self.use_cpu:
            logger.warning("several processes and no GPU: setting use_cpu=True so that they train together over gloo")
            self.use_cpu = True
        # `accelerate launch --cpu` (ACCELERATE_USE_CPU) puts the process on the CPU, which TrainingArguments follows
        # for the device but not for --bf16, which it refuses without use_cpu ("Your setup doesn't support bf16/gpu").
        self.use_cpu = self.use_cpu or env_flag("ACCELERATE_USE_CPU")
        # TrainingArguments reads the DeepSpeed file in its __post_init__ (HfTrainerDeepSpeedConfig; under
        # `accelerate launch` DeepSpeedPlugin reads ACCELERATE_DEEPSPEED_CONFIG_FILE) and fails without naming it.
        if isinstance(self.deepspeed, str):
            check_deepspeed_config(self.deepspeed, "--deepspeed")
        elif not self.deepspeed and env_flag("ACCELERATE_USE_DEEPSPEED"):
            check_deepspeed_config(os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none"), "deepspeed_config_file")
        super().__post_init__()
        if env_flag("ACCELERATE_USE_FSDP"):
            check_fsdp_launch(self)
        validate_distillation_settings(self)
        # Typed values only (the command line's words, 1:2 pairs and JSON text, are read by hf_distil.cli): checked
        # now, in one line naming the setting, not at step 1; kept in their JSON forms, which training_args.json and
        # the resume check record.
        layers = "tinybert" if self.intermediate_layers is None else self.intermediate_layers
        self.intermediate_layers = check_intermediate_layers(layers)
        self.teacher_weights = check_teacher_weights(self.teacher_weights)
        self.loss_schedules = {name: s.as_list() for name, s in check_schedules(self.loss_schedules).items()}
        if self.target_batch_size is not None:
            self.gradient_accumulation_steps = accumulation_for(
                self.target_batch_size, self.per_device_train_batch_size, self.world_size
            )


def check_teacher_weights(weights: Sequence[float] | None) -> list[float] | None:
    """`teacher_weights` as floats, checked (None: equal weights); their count must match the teachers, which
    `Teachers.build` checks once they are known."""
    if weights is None:
        return None
    form = (
        "pass one non-negative number per teacher, not all 0, e.g. teacher_weights=[0.7, 0.3] "
        "(--teacher_weights 0.7 0.3)"
    )
    is_list = isinstance(weights, Sequence) and not isinstance(weights, str) and len(weights) > 0
    if not is_list or not all(isinstance(w, numbers.Real) and not isinstance(w, bool) for w in weights):
        raise UsageError(f"teacher_weights {weights!r} is not a list of numbers; {form}.")
    if not all(0 <= w < math.inf for w in weights) or sum(weights) == 0:
        raise UsageError(f"teacher_weights {list(weights)}: weights must be finite, >= 0 and not all 0; {form}.")
    return [float(w) for w in weights]


def validate_distillation_settings(args: DistillationArguments) -> None:
    """Raise one actionable ValueError for settings that cannot train (see DistillationArguments)."""
    if not args.temperature > 0:
        raise UsageError(f"temperature must be > 0, got {args.temperature}; use 1.0 for no softening.")
    alphas = {name: getattr(args, name) for name in LOSS_WEIGHTS}
    negative = {k: v for k, v in alphas.items() if v < 0}
    if negative:
        raise UsageError(f"loss weights must be >= 0, got {negative}; set them to 0 to switch a term off.")
    if not any(alphas.values()):
        raise UsageError(
            "every loss weight is 0, nothing would train; set e.g. --alpha_ce 5 --alpha_mlm 2 --alpha_cos 1."
        )
    if args.alpha_mlm > 0 and args.alpha_clm > 0:
        raise UsageError(
            "alpha_mlm and alpha_clm are both > 0; a student is either masked (MLM) or causal (CLM): set one to 0."
        )
    # The same check as DataCollatorForDistillation's; a causal student (alpha_clm > 0) masks nothing.
    masked = args.alpha_clm == 0
    check_masking_settings(
        args.mlm_probability, args.mask_replace_prob, args.random_replace_prob, args.mlm_smoothing, mlm=masked
    )
    if args.relation_heads is not None and args.relation_heads < 1:
        raise UsageError(f"relation_heads must be >= 1, got {args.relation_heads}; omit it for the teacher's heads.")
    if args.relation_teacher_layer == 0:
        raise UsageError(
            "relation_teacher_layer 0 is the embedding output, which has no attention; pass a layer from 1, "
            "or -1 for the last."
        )
    if args.teacher_dtype is not None and args.teacher_dtype not in TEACHER_DTYPES:
        raise UsageError(
            f"teacher_dtype must be one of {', '.join(TEACHER_DTYPES)}, got {args.teacher_dtype!r}; omit it to "
            "keep the teacher's own dtype."
        )
    if not args.similarity_temperature > 0:
        raise UsageError(
            f"similarity_temperature must be > 0, got {args.similarity_temperature}; 0.05 is the usual value."
        )
    head_terms = [f"alpha_{t}" for t in HEAD_TERMS if getattr(args, f"alpha_{t}") > 0]
    if args.alpha_margin_mse > 0 and head_terms:
        raise UsageError(
            f"alpha_margin_mse reads (query, positive, negative) rows, which carry no masked-LM labels, but "
            f"{', '.join(head_terms)} > 0 read them; set {' and '.join(head_terms)} to 0."
        )
    if args.attention_maps not in ("probabilities", "scores"):
        raise UsageError(f"attention_maps must be 'probabilities' or 'scores', got {args.attention_maps!r}.")
