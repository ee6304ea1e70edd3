"""Extractive question answering (SQuAD v1.1): features with answer spans, and spans back from logits.

Long contexts are cut into overlapping windows (`stride` tokens shared); a window without the answer
points both labels at [CLS]. At evaluation the best (start, end) over all windows of an example wins.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase


def _windows(examples: dict[str, list], tokenizer: PreTrainedTokenizerBase, max_length: int, stride: int) -> Any:
    return tokenizer(
        [q.lstrip() for q in examples["question"]],
        examples["context"],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )


def train_features(
    examples: dict[str, list], tokenizer: PreTrainedTokenizerBase, max_length: int = 384, stride: int = 128
) -> dict[str, list]:
    """Windows with start_positions / end_positions (token indices of the answer, or 0 = [CLS])."""
    enc = _windows(examples, tokenizer, max_length, stride)
    starts, ends = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        example = enc["overflow_to_sample_mapping"][i]
        answer = examples["answers"][example]
        first_char = answer["answer_start"][0]
        last_char = first_char + len(answer["text"][0])
        sequence_ids = enc.sequence_ids(i)
        context = [j for j, s in enumerate(sequence_ids) if s == 1]
        if not context or offsets[context[0]][0] > first_char or offsets[context[-1]][1] < last_char:
            starts.append(0)
            ends.append(0)
            continue
        start = next(j for j in context if offsets[j][1] > first_char)
        end = next(j for j in reversed(context) if offsets[j][0] < last_char)
        starts.append(start)
        ends.append(end)
    enc["start_positions"], enc["end_positions"] = starts, ends
    enc.pop("offset_mapping")
    enc.pop("overflow_to_sample_mapping")
    return dict(enc)


def eval_features(
    examples: dict[str, list], tokenizer: PreTrainedTokenizerBase, max_length: int = 384, stride: int = 128
) -> dict[str, list]:
    """Windows that remember their example id and the character span of each context token."""
    enc = _windows(examples, tokenizer, max_length, stride)
    ids, offsets_out = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        ids.append(examples["id"][enc["overflow_to_sample_mapping"][i]])
        sequence_ids = enc.sequence_ids(i)
        offsets_out.append([o if sequence_ids[j] == 1 else None for j, o in enumerate(offsets)])
    enc["example_id"], enc["offset_mapping"] = ids, offsets_out
    enc.pop("overflow_to_sample_mapping")
    return dict(enc)


def best_spans(
    examples: dict[str, list],
    features: dict[str, list],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best: int = 20,
    max_answer_tokens: int = 30,
) -> dict[str, str]:
    """Example id → answer text: the highest start + end score over every window, end >= start."""
    by_example = defaultdict(list)
    for index, example_id in enumerate(features["example_id"]):
        by_example[example_id].append(index)
    answers = {}
    for example_id, context in zip(examples["id"], examples["context"]):
        best, best_score = "", -np.inf
        for index in by_example[example_id]:
            offsets = features["offset_mapping"][index]
            s_logits, e_logits = start_logits[index][: len(offsets)], end_logits[index][: len(offsets)]
            for s in np.argsort(s_logits)[-n_best:]:
                for e in np.argsort(e_logits)[-n_best:]:
                    if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_tokens:
                        continue
                    score = s_logits[s] + e_logits[e]
                    if score > best_score:
                        best, best_score = context[offsets[s][0] : offsets[e][1]], score
        answers[example_id] = best
    return answers
