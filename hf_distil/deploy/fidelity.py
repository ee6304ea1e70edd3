"""What the int8 gate compares: held-out inputs at batch 1, and each task's answer as a pipeline user sees it
(top-1 at [MASK], the label, the answer span, the nearest-neighbour sentence)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from ..data.collator import DataCollatorForDistillation
from ..models.pooling import Pooling


@dataclass(frozen=True)
class Task:
    """What a student head is exported as, and how its int8 answers are compared with fp32."""

    pipeline: str  # the transformers / transformers.js pipeline name
    auto_class: type
    outputs: tuple[str, ...]  # ONNX output names, as Optimum names them (transformers.js reads them by name)
    agreement: str  # what the fidelity figure counts
    regression: bool = (
        False  # one score per input: compared by correlation, since an argmax of one value always agrees
    )
    pooling: Pooling | None = None  # a sentence embedder: its pooling runs inside the graph (`sentence_embedding`)


MAX_ANSWER_TOKENS = 15  # question answering: longest span considered (transformers' pipeline, max_answer_len)


def held_out_sentences(texts: Sequence[str] | None = None, min_words: int = 6) -> list[str]:
    """Sentences of `texts` (default: the held-out articles of the gensim Wikipedia excerpt) of ≥ `min_words`."""
    if texts is None:
        from ..data.corpus import wikipedia_splits

        texts = wikipedia_splits()["test"]["text"]
    return [s.strip() for text in texts for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= min_words]


def fidelity_feeds(
    task: Task,
    tokenizer: PreTrainedTokenizerBase,
    sentences: Sequence[str],
    names: Sequence[str],
    max_length: int,
    mask_draws: int = 2,
) -> list[dict[str, np.ndarray]]:
    """Batch-1 inputs: each sentence masked `mask_draws` times (fixed seeds) for a masked LM, the sentence itself
    for a classifier or an encoder, (sentence i as question, the next two as context) for question answering."""
    if task.pipeline == "fill-mask":
        ids = tokenizer(list(sentences), truncation=True, max_length=max_length)["input_ids"]
        feeds = []
        for seed in range(mask_draws):
            collator = DataCollatorForDistillation(tokenizer, seed=seed)
            feeds += [{k: v.numpy() for k, v in collator([{"input_ids": x}]).items() if k in names} for x in ids]
        if "token_type_ids" in names:  # BERT masked LMs take them; the collator, made for training, has none
            feeds = [{**f, "token_type_ids": np.zeros_like(f["input_ids"])} for f in feeds]
        return feeds
    if task.pipeline == "question-answering":
        pairs = [(sentences[i], " ".join(sentences[i + 1 : i + 3])) for i in range(len(sentences) - 2)]
        # longest_first: a question longer than max_length alone (it happens in Wikipedia) is cut, not refused.
        encoded = [
            tokenizer(q, c, truncation="longest_first", max_length=max_length, return_tensors="np") for q, c in pairs
        ]
    else:
        encoded = [tokenizer(s, truncation=True, max_length=max_length, return_tensors="np") for s in sentences]
    return [{k: v.astype(np.int64) for k, v in e.items() if k in names} for e in encoded]


def answers(
    task: Task,
    outputs: Sequence[Sequence[np.ndarray]],
    feeds: Sequence[dict[str, np.ndarray]],
    mask_token_id: int | None,
) -> np.ndarray:
    """One answer per item, comparable across models: what a user of the pipeline would see."""
    if task.pipeline == "fill-mask":
        return np.concatenate([out[0][f["input_ids"] == mask_token_id].argmax(-1) for out, f in zip(outputs, feeds)])
    if task.regression:
        return np.array([float(out[0][0, 0]) for out in outputs])
    if task.pipeline == "text-classification":
        return np.array([out[0][0].argmax() for out in outputs])
    if task.pipeline == "question-answering":
        return np.array([_best_span(out[0][0], out[1][0], f) for out, f in zip(outputs, feeds)])
    embeddings = sentence_embeddings(task, outputs)
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(1)


def sentence_embeddings(task: Task, outputs: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """(items, width) unit vectors from batch-1 outputs: a sentence embedder's own `sentence_embedding` (its
    pooling, in the graph), else the mean of the token states (batch 1: no padding)."""
    if task.pooling is not None:
        pooled = np.stack([out[task.outputs.index("sentence_embedding")][0] for out in outputs])
    else:
        pooled = np.stack([out[0][0].mean(0) for out in outputs])
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def mean_cosine(task: Task, ours: Sequence[Sequence[np.ndarray]], reference: Sequence[Sequence[np.ndarray]]) -> float:
    """Mean cosine between each item's sentence embedding and fp32's: how far int8 moves the vectors a search
    index holds, which nearest-neighbour agreement alone does not say."""
    return float((sentence_embeddings(task, ours) * sentence_embeddings(task, reference)).sum(1).mean())


def _best_span(start: np.ndarray, end: np.ndarray, feed: dict[str, np.ndarray]) -> tuple[int, int]:
    """The (start, end) of highest start + end logit within the context, at most MAX_ANSWER_TOKENS long."""
    ids = feed["input_ids"][0]
    # The context is what follows the first [SEP] (question [SEP] context [SEP]); the last token is [SEP].
    first_sep = int(np.argmax(ids == ids[-1]))
    positions = np.arange(len(ids))
    context = (positions > first_sep) & (positions < len(ids) - 1)
    scores = start[:, None] + end[None, :]
    allowed = (
        context[:, None]
        & context[None, :]
        & (positions[None, :] >= positions[:, None])
        & (positions[None, :] - positions[:, None] < MAX_ANSWER_TOKENS)
    )
    scores = np.where(allowed, scores, -np.inf)
    return tuple(int(i) for i in np.unravel_index(scores.argmax(), scores.shape))


def agreement(ours: np.ndarray, reference: np.ndarray) -> float:
    """Share of items with the same answer (a span counts as one item: both ends must match)."""
    same = np.asarray(ours == reference).reshape(len(reference), -1)
    return float(same.all(1).mean())


def correlation(ours: np.ndarray, reference: np.ndarray) -> float:
    """Pearson correlation of a regression head's predictions with fp32's; 0 when either is constant (a model
    that answers the same whatever the input keeps none of what fp32 tells apart)."""
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if not (np.isfinite(ours).all() and ours.std() > 0 and reference.std() > 0):
        return 0.0
    return float(np.corrcoef(ours, reference)[0, 1])


def largest_relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """Largest |prediction − fp32's| over the largest |fp32 prediction|: relative to the predictions' scale, since
    a ratio per item blows up wherever fp32 predicts near 0."""
    scale = float(np.abs(reference).max())
    return float(np.abs(np.asarray(ours) - reference).max() / scale) if scale > 0 else float("inf")


def gate_figure(task: Task, ours: np.ndarray, reference: np.ndarray) -> float:
    """What the int8 gate holds against its threshold: the correlation for a regression head, else the agreement."""
    return correlation(ours, reference) if task.regression else agreement(ours, reference)


def format_figure(figure: float, regression: bool) -> str:
    """The gate's figure as people read it: a correlation as a number, an agreement as a share."""
    return f"{figure:.3f}" if regression else f"{figure:.1%}"
