"""Augmented transfer sets for task distillation: more text for the teacher to label than the task's training set.

Two ways, over tokenised text (a list of words per example):

- Tang et al. 2019 (arXiv:1903.12136, section 3.3): each word, with probability p_mask, becomes [MASK]; else, with
  probability p_pos, another word of the same part of speech, drawn from the task's unigram distribution within
  that tag; then, with probability p_ngram, the example shrinks to one random n-gram, n uniform in 1..5. Repeated
  n_iter times per example, duplicates discarded. Sentence pairs cycle through augmenting the first text only, the
  second only, and both.
- TinyBERT (Jiao et al. 2020, arXiv:1909.10351, Algorithm 1): each single-piece word, with probability p_replace,
  becomes one of the top-K words that the teacher's masked-LM head proposes at its position (K = 15). TinyBERT
  takes candidates for words of several word pieces from GloVe neighbours; no such vectors ship offline, so those
  words stay as they are.

Randomness comes from a `random.Random` (or a seed): the same seed gives the same transfer set.
"""

from __future__ import annotations

import bisect
import itertools
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import UsageError
from ..models import heads

_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


def words_of(text: str) -> list[str]:
    """Words and punctuation marks, the units the augmentation works on (the teacher's tokenizer later splits
    them into word pieces)."""
    return _WORD.findall(text)


@dataclass(frozen=True)
class TangRates:
    """The rule probabilities; defaults as the paper (p_mask = p_pos = 0.1, p_ng = 0.25, n ≤ 5)."""

    p_mask: float = 0.1
    p_pos: float = 0.1
    p_ngram: float = 0.25
    max_ngram: int = 5

    def __post_init__(self) -> None:
        for name in ("p_mask", "p_pos", "p_ngram"):
            if not 0 <= getattr(self, name) <= 1:
                raise UsageError(f"{name} must be in [0, 1], got {getattr(self, name)}.")
        if self.p_mask + self.p_pos > 1:
            raise UsageError(f"p_mask + p_pos must be <= 1 (one rule per word), got {self.p_mask + self.p_pos}.")
        if self.max_ngram < 1:
            raise UsageError(f"max_ngram must be >= 1, got {self.max_ngram}.")


class PosVocabulary:
    """Words seen with each part-of-speech tag, with their counts: replacement draws from the unigram
    distribution renormalised within the word's tag, which keeps the task's word frequencies."""

    def __init__(self, tagged: Iterable[tuple[Sequence[str], Sequence[str]]]) -> None:
        counts: dict[str, Counter] = {}
        for words, tags in tagged:
            for word, tag in zip(words, tags, strict=True):
                counts.setdefault(tag, Counter())[word] += 1
        self._words = {tag: sorted(c) for tag, c in counts.items()}  # sorted: the same draws in every process
        self._cumulative = {
            tag: list(itertools.accumulate(c[w] for w in self._words[tag])) for tag, c in counts.items()
        }

    def sample(self, tag: str, rng: random.Random) -> str | None:
        """A word of `tag`, drawn by frequency; None for a tag never seen."""
        if tag not in self._words:
            return None
        cumulative = self._cumulative[tag]
        return self._words[tag][bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]


def tang_augment(
    words: Sequence[str],
    tags: Sequence[str],
    vocabulary: PosVocabulary,
    rng: random.Random,
    rates: TangRates | None = None,
    mask_token: str = "[MASK]",
) -> list[str]:
    """One synthetic example from `words` (tags: one per word). Masking and POS replacement exclude each other
    for a word (one uniform draw decides: < p_mask masks, < p_mask + p_pos replaces); n-gram sampling then applies
    to the whole example."""
    rates = rates or TangRates()
    out = []
    for word, tag in zip(words, tags, strict=True):
        draw = rng.random()
        if draw < rates.p_mask:
            out.append(mask_token)
        elif draw < rates.p_mask + rates.p_pos:
            out.append(vocabulary.sample(tag, rng) or word)
        else:
            out.append(word)
    if out and rng.random() < rates.p_ngram:
        n = min(rng.randint(1, rates.max_ngram), len(out))
        start = rng.randint(0, len(out) - n)
        out = out[start : start + n]
    return out


def augment_examples(
    examples: Sequence[Sequence[Sequence[str]]],
    augment_one: Callable[[int, int, random.Random], list[str]],
    n_iter: int,
    seed: int,
) -> list[tuple[str, ...]]:
    """Up to `n_iter` new examples per example, each a tuple of texts (one, or two for a pair), none repeated and
    none equal to an original. `examples[i]` holds the word lists of example i's texts; `augment_one(i, j, rng)`
    returns an augmented word list for text j of example i. Pairs cycle through first only, second only, both."""
    if n_iter < 0:
        raise UsageError(f"n_iter must be >= 0, got {n_iter}.")
    rng = random.Random(seed)
    seen = {tuple(" ".join(words) for words in example) for example in examples}
    out = []
    for i, example in enumerate(examples):
        for k in range(n_iter):
            which = range(len(example)) if len(example) == 1 or k % 3 == 2 else [k % 3]
            texts = tuple(
                " ".join(augment_one(i, j, rng)) if j in which else " ".join(words) for j, words in enumerate(example)
            )
            if texts not in seen and all(texts):
                seen.add(texts)
                out.append(texts)
    return out


def tang_transfer_set(
    examples: Sequence[Sequence[Sequence[str]]],
    tags: Sequence[Sequence[Sequence[str]]],
    n_iter: int = 20,
    seed: int = 0,
    rates: TangRates | None = None,
    mask_token: str = "[MASK]",
) -> list[tuple[str, ...]]:
    """Tang et al.'s augmented examples for a task: `examples` as in `augment_examples`, `tags` one per word; the
    replacement vocabulary is built from these examples' own words."""
    vocabulary = PosVocabulary(
        (w, t) for example, example_tags in zip(examples, tags) for w, t in zip(example, example_tags)
    )

    def augment_one(i: int, j: int, rng: random.Random) -> list[str]:
        return tang_augment(examples[i][j], tags[i][j], vocabulary, rng, rates, mask_token)

    return augment_examples(examples, augment_one, n_iter, seed)


@torch.no_grad()
def mlm_candidates(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[Sequence[str]],
    top_k: int = 15,
    max_length: int = 128,
    spacing: int = 8,
    batch_size: int = 32,
) -> list[list[list[str]]]:
    """For each word of each text, the masked LM's top-k replacement words at its position ([] where there are
    none: a word of several pieces, or beyond `max_length` tokens).

    TinyBERT masks one word per forward pass. To keep the cost at `spacing` passes per text whatever its length,
    every `spacing`-th word is masked together (words 0, 8, 16, … in one pass, 1, 9, 17, … in the next), so each
    masked word still sees its neighbours. Proposals that are word pieces ("##…"), special tokens or the word
    itself are left out.
    """
    device = next(model.parameters()).device
    model.eval()
    special = set(tokenizer.all_special_ids)
    encoded = [
        tokenizer(list(words), is_split_into_words=True, truncation=True, max_length=max_length) for words in texts
    ]
    jobs = []  # (text, [(token position, word index)]) for each pass
    for t, enc in enumerate(encoded):
        word_ids = enc.word_ids()
        pieces = Counter(w for w in word_ids if w is not None)
        single = [(pos, w) for pos, w in enumerate(word_ids) if w is not None and pieces[w] == 1]
        for r in range(spacing):
            chosen = [(pos, w) for pos, w in single if w % spacing == r]
            if chosen:
                jobs.append((t, chosen))
    candidates: list[list[list[str]]] = [[[] for _ in words] for words in texts]
    for start in range(0, len(jobs), batch_size):
        batch_jobs = jobs[start : start + batch_size]
        rows = []
        for t, chosen in batch_jobs:
            ids = list(encoded[t]["input_ids"])
            for pos, _ in chosen:
                ids[pos] = tokenizer.mask_token_id
            rows.append({"input_ids": ids})
        batch = tokenizer.pad(rows, return_tensors="pt").to(device)
        at_mask = batch["input_ids"] == tokenizer.mask_token_id  # (B, L); rows in order, positions ascending
        logits = heads.hidden_and_row_logits(model, batch, at_mask, split=heads.can_split(model)).row_logits
        ranked = iter(logits.topk(top_k + len(special) + 1, dim=-1).indices.tolist())
        for t, chosen in batch_jobs:
            for _, w in chosen:
                original = texts[t][w].lower()
                words = [tokenizer.convert_ids_to_tokens(i) for i in next(ranked) if i not in special]
                candidates[t][w] = [x for x in words if not x.startswith("##") and x != original][:top_k]
    return candidates


def mlm_transfer_set(
    examples: Sequence[Sequence[Sequence[str]]],
    candidates: Sequence[Sequence[Sequence[Sequence[str]]]],
    n_iter: int = 20,
    seed: int = 0,
    p_replace: float = 0.4,
) -> list[tuple[str, ...]]:
    """TinyBERT's augmented examples: each word with candidates is replaced with probability `p_replace` (0.4 in
    the paper) by one of them, uniformly. `candidates[i][j]` is `mlm_candidates` of text j of example i."""
    if not 0 <= p_replace <= 1:
        raise UsageError(f"p_replace must be in [0, 1], got {p_replace}.")

    def augment_one(i: int, j: int, rng: random.Random) -> list[str]:
        out = []
        for word, options in zip(examples[i][j], candidates[i][j], strict=True):
            replace = rng.random() < p_replace
            out.append(rng.choice(options) if replace and options else word)
        return out

    return augment_examples(examples, augment_one, n_iter, seed)
