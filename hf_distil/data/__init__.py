"""The text a student learns from: the corpus pipeline, dynamic masking and the collator that applies it, and the
sentence collator of the pooled-embedding terms."""

from .collator import DataCollatorForDistillation, check_vocabulary
from .corpus import (
    HELD_OUT_ARTICLES,
    MIN_TOKENS,
    DataArguments,
    fit_max_seq_length,
    prepare_corpus,
    token_counts,
    tokenize_and_chunk,
    wikipedia_splits,
)
from .sentences import SentenceCollator

__all__ = [
    "DataArguments",
    "DataCollatorForDistillation",
    "HELD_OUT_ARTICLES",
    "MIN_TOKENS",
    "SentenceCollator",
    "check_vocabulary",
    "fit_max_seq_length",
    "prepare_corpus",
    "token_counts",
    "tokenize_and_chunk",
    "wikipedia_splits",
]
