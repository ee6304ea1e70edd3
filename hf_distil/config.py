"""Every knob of a distillation run, documented once (in each field's `help`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class DistillationArguments(TrainingArguments):
    """TrainingArguments plus the distillation settings of DistilBERT (Sanh et al. 2019).

    > Parameters that control the loss: `temperature`, `alpha_*`, `restrict_ce_to_mask`.
    > Parameters that control dynamic masking: `mlm_probability`, `mask_replace_prob`,
      `random_replace_prob`, `mlm_smoothing`, `whole_word_masking`.

    > [!NOTE]
    > The loss and masking defaults are those of DistilBERT's own run (reference `train.py`). The
    > optimisation defaults stay those of `TrainingArguments`; the recipes' YAML files set the paper's
    > (lr 5e-4, betas 0.9/0.98, eps 1e-6, warm-up 5%, clipping 5.0).
    """

    temperature: float = field(
        default=2.0,
        metadata={"help": "Softmax temperature applied to teacher and student logits in L_ce; the term is scaled by T²."},
    )
    alpha_ce: float = field(default=5.0, metadata={"help": "Weight of L_ce, the KL between softened teacher and student distributions."})
    alpha_mlm: float = field(default=2.0, metadata={"help": "Weight of L_mlm, the student's masked-LM cross-entropy on the masked positions."})
    alpha_cos: float = field(default=1.0, metadata={"help": "Weight of L_cos, 1 - cosine between student and teacher last hidden states (non-pad tokens)."})
    alpha_mse: float = field(default=0.0, metadata={"help": "Weight of L_mse, squared error between student and teacher logits, summed over the vocabulary."})
    alpha_clm: float = field(default=0.0, metadata={"help": "Weight of L_clm, the next-token cross-entropy of a causal student (exclusive with alpha_mlm)."})
    restrict_ce_to_mask: bool = field(
        default=False,
        metadata={"help": "Compute L_ce and L_mse at the masked positions only (default: every non-pad token). "
                  "The LM heads then run only at those rows, which saves time and memory."},
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of real tokens chosen for prediction in each batch (drawn anew per batch)."})
    mask_replace_prob: float = field(default=0.8, metadata={"help": "Share of chosen tokens replaced by [MASK]."})
    random_replace_prob: float = field(
        default=0.1,
        metadata={"help": "Share of chosen tokens replaced by a uniformly random token; the rest stay unchanged."},
    )
    mlm_smoothing: float = field(
        default=0.7,
        metadata={"help": "Tokens are chosen with weight max(count, 1)^-mlm_smoothing when token counts are given "
                  "(rare tokens favoured); 0 gives uniform choice."},
    )
    whole_word_masking: bool = field(
        default=False, metadata={"help": "Choose whole words: a chosen word-piece brings the pieces of its word along."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        validate_distillation_settings(self)


def validate_distillation_settings(args: DistillationArguments) -> None:
    """Raise one actionable ValueError for settings that cannot train (see DistillationArguments)."""
    if not args.temperature > 0:
        raise ValueError(f"temperature must be > 0, got {args.temperature}; use 1.0 for no softening.")
    alphas = {name: getattr(args, name) for name in ("alpha_ce", "alpha_mlm", "alpha_cos", "alpha_mse", "alpha_clm")}
    negative = {k: v for k, v in alphas.items() if v < 0}
    if negative:
        raise ValueError(f"loss weights must be >= 0, got {negative}; set them to 0 to switch a term off.")
    if not any(alphas.values()):
        raise ValueError("every loss weight is 0, nothing would train; set e.g. --alpha_ce 5 --alpha_mlm 2 --alpha_cos 1.")
    if args.alpha_mlm > 0 and args.alpha_clm > 0:
        raise ValueError("alpha_mlm and alpha_clm are both > 0; a student is either masked (MLM) or causal (CLM): set one to 0.")
    for name in ("mlm_probability", "mask_replace_prob", "random_replace_prob"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value}.")
    if args.mask_replace_prob + args.random_replace_prob > 1.0 + 1e-9:
        raise ValueError(
            f"mask_replace_prob + random_replace_prob = {args.mask_replace_prob + args.random_replace_prob:g} > 1; "
            "the remainder is the share kept unchanged, so their sum must be <= 1."
        )
    if args.mlm_smoothing < 0:
        raise ValueError(f"mlm_smoothing must be >= 0, got {args.mlm_smoothing}; 0.7 favours rare tokens as DistilBERT does.")
