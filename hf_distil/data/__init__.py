"""The text a student learns from: the corpus pipeline, dynamic masking and the collator that applies it."""

from .collator import DataCollatorForDistillation, check_vocabulary
from .corpus import (
    HELD_OUT_ARTICLES,
    MIN_TOKENS,
    DataArguments,
    fit_max_seq_length,
    load_texts,
    prepare_corpus,
    token_counts,
    tokenize_and_chunk,
    wikipedia_splits,
)

__all__ = [
    "DataArguments",
    "DataCollatorForDistillation",
    "HELD_OUT_ARTICLES",
    "MIN_TOKENS",
    "check_vocabulary",
    "fit_max_seq_length",
    "load_texts",
    "prepare_corpus",
    "token_counts",
    "tokenize_and_chunk",
    "wikipedia_splits",
]
