"""The text a student learns from: the corpus pipeline, dynamic masking and the collator that applies it, and the
sentences of an embedding distillation with the collator that tokenises them for each model."""

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
from .sentence_corpus import news_background, sentence_splits, split_sentences
from .sentences import SentenceCollator, same_tokenization

__all__ = [
    "DataArguments",
    "DataCollatorForDistillation",
    "HELD_OUT_ARTICLES",
    "MIN_TOKENS",
    "SentenceCollator",
    "check_vocabulary",
    "fit_max_seq_length",
    "load_texts",
    "news_background",
    "prepare_corpus",
    "same_tokenization",
    "sentence_splits",
    "split_sentences",
    "token_counts",
    "tokenize_and_chunk",
    "wikipedia_splits",
]
