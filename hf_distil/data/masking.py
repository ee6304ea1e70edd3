"""Dynamic masking maths (RoBERTa-style, as in DistilBERT): which tokens to predict and what they become.

Pure tensor functions; every random draw comes from the `torch.Generator` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ..errors import UsageError
from ..losses.terms import IGNORE_INDEX


def check_masking_settings(
    mlm_probability: float,
    mask_replace_prob: float,
    random_replace_prob: float,
    mlm_smoothing: float,
    mlm: bool = True,
) -> None:
    """One `UsageError` line for masking settings that cannot train; shared by the arguments and the collator.

    mlm=False (a causal student) masks nothing, so `mlm_probability` is not checked then. With 0 a masked
    student would see no [MASK] and L_mlm would have nothing to learn from (issue 12, item 5).
    """
    if mlm and not 0.0 < mlm_probability <= 1.0:
        raise UsageError(
            f"mlm_probability must lie in (0, 1] for a masked-LM student, got {mlm_probability}; "
            "BERT and DistilBERT choose 0.15 of the tokens."
        )
    for name, value in (("mask_replace_prob", mask_replace_prob), ("random_replace_prob", random_replace_prob)):
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"{name} must lie in [0, 1], got {value}; BERT uses 0.8 [MASK] and 0.1 random.")
    if mask_replace_prob + random_replace_prob > 1.0 + 1e-9:
        raise UsageError(
            f"mask_replace_prob + random_replace_prob = {mask_replace_prob + random_replace_prob:g} > 1; "
            "the remainder is the share kept unchanged, so their sum must be <= 1."
        )
    if mlm_smoothing < 0:
        raise UsageError(f"mlm_smoothing must be >= 0, got {mlm_smoothing}; 0.7 favours rare tokens (DistilBERT).")


def token_weights(counts: torch.Tensor, smoothing: float, special_ids: Iterable[int]) -> torch.Tensor:
    """Sampling weight per vocabulary id: max(count, 1)^-smoothing, 0 for special tokens.

    counts (V,). With smoothing 0.7 (DistilBERT) rare tokens are chosen more often than their frequency
    alone would give, so the student does not spend its predictions on "the" and ",".
    """
    weights = counts.double().clamp_min(1.0).pow(-smoothing)
    weights[list(special_ids)] = 0.0
    return weights


def word_ids_from_continuation(
    input_ids: torch.Tensor, eligible: torch.Tensor, is_continuation: torch.Tensor
) -> torch.Tensor:
    """Number each word across the batch: (B, L) long, -1 where not eligible.

    is_continuation (V,) bool marks word-pieces that continue the previous word ("##ing" in WordPiece).
    """
    starts = eligible & ~is_continuation[input_ids]
    word = torch.cumsum(starts.flatten(), 0).view_as(input_ids) - 1
    return torch.where(eligible, word, torch.full_like(word, -1))


def choose_positions(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    probability: float,
    weights: torch.Tensor,
    generator: torch.Generator | None = None,
    word_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pick ceil(probability × real tokens) positions of the batch without replacement: (B, L) bool.

    input_ids, attention_mask (B, L); weights (V,) per vocabulary id (0 = never, e.g. specials). The
    draw is over the whole batch, as in the reference, so the count per sequence varies. Pads are never
    chosen. With word_ids (see `word_ids_from_continuation`), whole words are drawn (weighted by their
    first piece) until the token budget is reached.
    """
    real = attention_mask.bool()
    budget = math.ceil(probability * int(real.sum()))
    candidate_weights = torch.where(real, weights.to(input_ids.device)[input_ids], 0.0).double()
    if word_ids is None:
        flat = candidate_weights.flatten()
        n = min(budget, int(flat.gt(0).sum()))
        chosen = torch.zeros_like(flat, dtype=torch.bool)
        if n > 0:
            chosen[torch.multinomial(flat, n, replacement=False, generator=generator)] = True
        return chosen.view_as(input_ids)
    return _choose_words(candidate_weights, word_ids, budget, generator)


def _choose_words(
    candidate_weights: torch.Tensor, word_ids: torch.Tensor, budget: int, generator: torch.Generator | None
) -> torch.Tensor:
    num_words = int(word_ids.max()) + 1
    in_word = word_ids >= 0
    if num_words <= 0 or budget == 0:
        return torch.zeros_like(word_ids, dtype=torch.bool)
    ids = word_ids[in_word]
    # A word's weight is that of its first piece; its cost is its number of pieces.
    first = torch.ones_like(ids, dtype=torch.bool)
    first[1:] = ids[1:] != ids[:-1]
    word_weight = candidate_weights[in_word][first]
    word_len = torch.bincount(ids, minlength=num_words)
    eligible = int(word_weight.gt(0).sum())
    if eligible == 0:
        return torch.zeros_like(word_ids, dtype=torch.bool)
    order = torch.multinomial(word_weight, eligible, replacement=False, generator=generator)
    taken = order[torch.cumsum(word_len[order], 0) <= budget]
    chosen_word = torch.zeros(num_words, dtype=torch.bool, device=word_ids.device)
    chosen_word[taken] = True
    return in_word & chosen_word[word_ids.clamp_min(0)]


def apply_replacements(
    input_ids: torch.Tensor,
    chosen: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10: chosen tokens become [MASK], a uniformly random id, or stay; returns (ids, labels).

    Each chosen token draws its fate independently (as the reference's multinomial with replacement).
    labels (B, L) hold the original id at chosen positions and -100 elsewhere.
    """
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    u = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    to_mask = chosen & (u < mask_replace_prob)
    to_random = chosen & (u >= mask_replace_prob) & (u < mask_replace_prob + random_replace_prob)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=input_ids.device)
    ids = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    ids = torch.where(to_random, random_ids, ids)
    return ids, labels
