"""Masking maths: exact budgets, and statistics within binomial bounds over many draws."""

import math

import pytest
import torch

from hf_distil.data import masking

MASK_ID, VOCAB = 4, 60


def four_sigma(n: int, p: float) -> float:
    return 4 * math.sqrt(n * p * (1 - p))


def test_token_weights_favour_rare_tokens_and_zero_specials():
    w = masking.token_weights(torch.tensor([0, 1, 10, 1000]), 0.7, special_ids=[0])
    assert w[0] == 0 and w[1] == 1.0  # counts below 1 are clamped to 1
    assert w[2].item() == pytest.approx(10**-0.7) and w[3].item() == pytest.approx(1000**-0.7)


def test_budget_is_ceil_of_probability_times_real_tokens_and_pads_never_chosen():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (8, 30), generator=g)
    mask = torch.ones_like(ids)
    for row, length in enumerate([30, 25, 3, 12, 30, 7, 1, 20]):
        mask[row, length:] = 0
    weights = masking.token_weights(torch.ones(VOCAB), 0.0, range(5))
    per_row = []
    for _ in range(200):
        chosen = masking.choose_positions(ids, mask, 0.15, weights, g)
        assert int(chosen.sum()) == math.ceil(0.15 * int(mask.sum()))
        assert not chosen[mask == 0].any()
        per_row.append(chosen.sum(1))
    assert torch.stack(per_row).float().std(0).max() > 0  # the count per sequence varies


def test_specials_are_never_chosen():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (4, 40), generator=g)
    weights = masking.token_weights(torch.ones(VOCAB), 0.7, range(5))
    for _ in range(200):
        chosen = masking.choose_positions(ids, torch.ones_like(ids), 0.5, weights, g)
        assert not chosen[ids < 5].any()


@pytest.mark.parametrize("counts, expected", [(None, 0.5), ((1000, 10), 100**0.7 / (100**0.7 + 1))])
def test_smoothing_bias_within_binomial_bounds(counts, expected):
    # One draw per batch (budget 1), so P(rare) = w_rare / (w_rare + w_frequent) exactly.
    a, b = 10, 11
    table = torch.ones(VOCAB)
    if counts:
        table[a], table[b] = counts
    weights = masking.token_weights(table, 0.7 if counts else 0.0, range(5))
    ids = torch.tensor([[a, b] * 10])
    g = torch.Generator().manual_seed(2)
    n = 3000
    hits = sum(
        int(ids[masking.choose_positions(ids, torch.ones_like(ids), 0.01, weights, g)].item() == b) for _ in range(n)
    )
    assert abs(hits - n * expected) < four_sigma(n, expected)


def test_80_10_10_split_within_binomial_bounds():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, VOCAB, (64, 128), generator=g)
    chosen = torch.rand(ids.shape, generator=g) < 0.5
    new, labels = masking.apply_replacements(ids, chosen, MASK_ID, VOCAB, 0.8, 0.1, g)
    n = int(chosen.sum())
    masked = int((new[chosen] == MASK_ID).sum())
    changed = int(((new != ids) & (new != MASK_ID))[chosen].sum())
    p_changed = 0.1 * (VOCAB - 2) / VOCAB  # a random id may equal the original or the mask id
    assert abs(masked - 0.8 * n) < four_sigma(n, 0.8) + n * 0.1 / VOCAB
    assert abs(changed - p_changed * n) < four_sigma(n, p_changed)
    assert torch.equal(labels[chosen], ids[chosen]) and (labels[~chosen] == -100).all()
    assert torch.equal(new[~chosen], ids[~chosen])


def test_whole_words_are_chosen_together():
    # Pieces: word starts are ids 5..9, continuations 10..14.
    is_cont = torch.zeros(VOCAB, dtype=torch.bool)
    is_cont[10:15] = True
    ids = torch.tensor([[2, 5, 10, 11, 6, 7, 12, 8, 9, 13, 14, 3]])
    eligible = ids >= 5
    words = masking.word_ids_from_continuation(ids, eligible, is_cont)
    assert words.tolist() == [[-1, 0, 0, 0, 1, 2, 2, 3, 4, 4, 4, -1]]
    weights = masking.token_weights(torch.ones(VOCAB), 0.0, range(5))
    g = torch.Generator().manual_seed(4)
    for _ in range(100):
        chosen = masking.choose_positions(ids, torch.ones_like(ids), 0.4, weights, g, word_ids=words)
        assert 0 < int(chosen.sum()) <= math.ceil(0.4 * 12)
        for w in range(5):
            assert chosen[words == w].all() or not chosen[words == w].any()
