"""The corpus pipeline: token counts for the masking weights (the recipe's loading and grouping follow)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase


def token_counts(
    texts_or_dataset: Sequence[str] | Iterable[Sequence[int]] | "datasets.Dataset",  # noqa: F821
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 1000,
) -> torch.Tensor:
    """Occurrences of every vocabulary id, (len(tokenizer),) long, for `DataCollatorForDistillation`.

    Accepts raw texts, sequences of token ids, or a `datasets.Dataset` with an `input_ids` (preferred)
    or `text` column. Texts are encoded with special tokens, as the model will see them.
    """
    column_names = getattr(texts_or_dataset, "column_names", None)
    if column_names is not None:
        column = "input_ids" if "input_ids" in column_names else "text"
        if column not in column_names:
            raise ValueError(f"the dataset has columns {column_names}; token_counts needs 'input_ids' or 'text'.")
        items: Sequence = texts_or_dataset[column]
    else:
        items = list(texts_or_dataset)
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    for start in tqdm(range(0, len(items), batch_size), desc="Counting tokens", unit="batch", disable=len(items) <= batch_size):
        chunk = items[start : start + batch_size]
        if chunk and isinstance(chunk[0], str):
            chunk = tokenizer(list(chunk), add_special_tokens=True, truncation=False)["input_ids"]
        if chunk:
            flat = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in chunk])
            counts += np.bincount(flat, minlength=len(tokenizer))[: len(tokenizer)]
    return torch.from_numpy(counts)
