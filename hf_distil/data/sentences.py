"""`SentenceCollator`: raw sentences tokenised per batch, by the student's tokenizer and, when it reads text
differently, by the teacher's: the pooled-embedding terms compare sentences, not tokens, so each model reads the
text its own way (sentence-level distillation across vocabularies)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from ..errors import UsageError

TEXT_COLUMN = "text"
TRIPLET_COLUMNS = ("query", "positive", "negative")
SENTENCE_COLUMNS = (TEXT_COLUMN, *TRIPLET_COLUMNS)
TEACHER_PREFIX = "teacher_"  # teacher_input_ids, teacher_attention_mask
_PROBE = "Distillation, naïvely: 3 CAFÉS & the über-rare Zyzzyva!"


def same_tokenization(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    """Whether two tokenizers give the same ids: the same vocabulary, and the same pieces for a probe sentence with
    case, accents, digits and punctuation (normalisation differs between tokenizers of one vocabulary)."""
    return a is b or (a.get_vocab() == b.get_vocab() and a(_PROBE)["input_ids"] == b(_PROBE)["input_ids"])


def is_sentence_dataset(dataset: Any) -> bool:
    """A dataset of raw sentences: a "text" column or "query"/"positive"/"negative" columns, no token ids."""
    columns = set(getattr(dataset, "column_names", None) or [])
    raw = TEXT_COLUMN in columns or set(TRIPLET_COLUMNS) <= columns
    return raw and "input_ids" not in columns


def has_triplets(dataset: Any) -> bool:
    return set(TRIPLET_COLUMNS) <= set(getattr(dataset, "column_names", None) or [])


class SentenceCollator:
    """Rows of raw text → `input_ids`, `attention_mask` (padded, truncated to `max_length`) from `tokenizer`, plus
    `teacher_input_ids`, `teacher_attention_mask` from `teacher_tokenizer` when given.

    Rows with a "text" column give one sentence each; rows with "query", "positive", "negative" give three, laid
    out as the B queries, then the B positives, then the B negatives (what `losses.margin_mse` reads).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        teacher_tokenizer: PreTrainedTokenizerBase | None = None,
        max_length: int | None = None,
        teacher_max_length: int | None = None,
    ) -> None:
        for role, t in (("student", tokenizer), ("teacher", teacher_tokenizer)):
            if t is not None and t.pad_token_id is None:
                raise UsageError(f"the {role}'s {type(t).__name__} has no pad token; set tokenizer.pad_token first.")
        self.tokenizer = tokenizer
        self.teacher_tokenizer = teacher_tokenizer
        self.max_length = max_length
        self.teacher_max_length = teacher_max_length

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        texts = self.sentences(features)
        batch = self._encode(self.tokenizer, texts, self.max_length)
        if self.teacher_tokenizer is not None:
            teacher = self._encode(self.teacher_tokenizer, texts, self.teacher_max_length)
            batch.update({TEACHER_PREFIX + k: v for k, v in teacher.items()})
        return batch

    @staticmethod
    def sentences(features: Sequence[dict[str, Any]]) -> list[str]:
        first = features[0]
        if all(c in first for c in TRIPLET_COLUMNS):
            return [f[c] for c in TRIPLET_COLUMNS for f in features]
        if TEXT_COLUMN not in first:
            raise UsageError(
                f"a sentence batch needs a {TEXT_COLUMN!r} column or {', '.join(TRIPLET_COLUMNS)} columns, got "
                f"{', '.join(first) or 'none'}."
            )
        return [f[TEXT_COLUMN] for f in features]

    @staticmethod
    def _encode(
        tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int | None
    ) -> dict[str, torch.Tensor]:
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def split_teacher_inputs(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The teacher's own token ids and mask (popped from `inputs`) when it reads the text with its own tokenizer,
    else `inputs` itself."""
    if TEACHER_PREFIX + "input_ids" not in inputs:
        return inputs
    return {k.removeprefix(TEACHER_PREFIX): inputs.pop(k) for k in list(inputs) if k.startswith(TEACHER_PREFIX)}
