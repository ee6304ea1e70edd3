import random
from collections import Counter

import pytest
import torch
from conftest import tiny_bert_config
from transformers import BertForMaskedLM

from hf_distil.errors import UsageError
from hf_distil.tasks.augment import (
    PosVocabulary,
    TangRates,
    augment_examples,
    mlm_candidates,
    mlm_transfer_set,
    tang_augment,
    tang_transfer_set,
    words_of,
)

WORDS = [f"w{i}" for i in range(12)]
# Every word is tagged X; the only X word of the vocabulary is "other", so a replacement always shows.
ONLY_OTHER = PosVocabulary([(["other"], ["X"])])


def draws(n: int, rates: TangRates, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    return [tang_augment(WORDS, ["X"] * len(WORDS), ONLY_OTHER, rng, rates) for _ in range(n)]


def test_masking_and_pos_replacement_rates_match_p_mask_and_p_pos():
    outputs = draws(2000, TangRates(p_ngram=0.0))  # 24,000 words; one standard error is 0.002
    words = [w for out in outputs for w in out]
    assert len(words) == 24000
    assert words.count("[MASK]") / len(words) == pytest.approx(0.1, abs=0.008)
    assert words.count("other") / len(words) == pytest.approx(0.1, abs=0.008)
    # the two rules exclude each other: what is neither is the original word at its place
    for out in outputs[:50]:
        assert all(w in ("[MASK]", "other", WORDS[i]) for i, w in enumerate(out))


def test_ngram_sampling_rate_bounds_and_uniform_n():
    outputs = draws(4000, TangRates(p_mask=0.0, p_pos=0.0))  # one standard error of the rate is 0.007
    cut = [out for out in outputs if len(out) < len(WORDS)]
    assert len(cut) / len(outputs) == pytest.approx(0.25, abs=0.03)
    lengths = Counter(len(out) for out in cut)
    assert set(lengths) == {1, 2, 3, 4, 5}
    assert all(count / len(cut) == pytest.approx(0.2, abs=0.05) for count in lengths.values())
    joined = " ".join(WORDS)
    assert all(f" {' '.join(out)} " in f" {joined} " for out in cut)  # a contiguous n-gram of the example
    starts = Counter(WORDS.index(out[0]) for out in cut if len(out) == 5)
    assert set(starts) == set(range(len(WORDS) - 4))  # every start whose 5-gram fits, and no other


def test_ngram_of_a_short_example_is_never_longer_than_the_example():
    rng = random.Random(1)
    rates = TangRates(p_mask=0.0, p_pos=0.0, p_ngram=1.0)
    lengths = {len(tang_augment(["a", "b"], ["X", "X"], ONLY_OTHER, rng, rates)) for _ in range(200)}
    assert lengths == {1, 2}


def test_pos_replacement_draws_by_frequency_within_the_tag():
    vocabulary = PosVocabulary([(["cat", "cat", "runs", "cat", "dog"], ["NN", "NN", "VBZ", "NN", "NN"])])
    rng = random.Random(0)
    drawn = Counter(vocabulary.sample("NN", rng) for _ in range(8000))
    assert set(drawn) == {"cat", "dog"}
    assert drawn["cat"] / 8000 == pytest.approx(0.75, abs=0.02)
    assert vocabulary.sample("JJ", rng) is None
    rates = TangRates(p_mask=0.0, p_pos=1.0, p_ngram=0.0)
    out = tang_augment(["fast", "dog", "runs"], ["JJ", "NN", "VBZ"], vocabulary, rng, rates)
    assert out[0] == "fast" and out[1] in ("cat", "dog") and out[2] == "runs"  # an unseen tag keeps its word


def test_transfer_set_is_deterministic_by_seed_and_has_no_duplicates_or_originals():
    examples = [[words_of(t)] for t in ("the cat sat on the mat .", "a dog ran home", "it is a big red house")]
    tags = [[["X"] * len(e[0])] for e in examples]
    first = tang_transfer_set(examples, tags, n_iter=20, seed=3)
    assert first == tang_transfer_set(examples, tags, n_iter=20, seed=3)
    assert first != tang_transfer_set(examples, tags, n_iter=20, seed=4)
    assert len(first) == len(set(first)) and 0 < len(first) <= 60
    assert not {(" ".join(e[0]),) for e in examples} & set(first)


def test_pairs_cycle_through_first_second_and_both():
    example = [[f"a{i}" for i in range(8)], [f"b{i}" for i in range(8)]]
    seen = []

    def mark(i, j, rng):
        seen.append(j)
        return [w + "'" for w in example[j]]

    out = augment_examples([example], mark, n_iter=6, seed=0)
    assert seen == [0, 1, 0, 1, 0, 1, 0, 1]  # iterations: first, second, both, first, second, both
    first, second = " ".join(example[0]), " ".join(example[1])
    assert out[0][1] == second and out[0][0] != first
    assert out[1][0] == first and out[1][1] != second
    assert out[2][0] != first and out[2][1] != second
    assert len(out) == 3  # iterations 4-6 repeat 1-3 and are dropped


def test_bad_rates_are_refused():
    with pytest.raises(UsageError, match="p_mask must be in"):
        TangRates(p_mask=1.5)
    with pytest.raises(UsageError, match="p_mask \\+ p_pos must be <= 1"):
        TangRates(p_mask=0.6, p_pos=0.6)


@pytest.fixture
def mlm(tokenizer):
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_bert_config(len(tokenizer)))
    with torch.no_grad():
        model.cls.predictions.decoder.weight.normal_(0, 1.0)
    return model.eval()


def test_mlm_candidates_match_masking_one_word_at_a_time(mlm, tokenizer):
    """With fewer words than `spacing`, each pass masks one word: TinyBERT's own procedure."""
    texts = [["the", "cat", "sat", "on", "mat"], ["a", "playing", "dog"]]  # "playing" is play ##ing
    candidates = mlm_candidates(mlm, tokenizer, texts, top_k=4, spacing=8)
    assert candidates[1][1] == []  # several word pieces: no candidates
    special = set(tokenizer.all_special_ids)
    for t, words in enumerate(texts):
        enc = tokenizer(words, is_split_into_words=True)
        for position, w in enumerate(enc.word_ids()):
            if w is None or (t, w) == (1, 1):
                continue
            ids = torch.tensor([enc["input_ids"]])
            ids[0, position] = tokenizer.mask_token_id
            ranked = mlm(input_ids=ids).logits[0, position].argsort(descending=True).tolist()
            tokens = [tokenizer.convert_ids_to_tokens(i) for i in ranked if i not in special]
            expected = [x for x in tokens if not x.startswith("##") and x != words[w]][:4]
            assert candidates[t][w] == expected
            assert len(expected) == 4


def test_mlm_transfer_set_replaces_at_p_replace_and_is_deterministic():
    # 200 examples of 50 words: no draw repeats another or leaves an example unchanged, so none is dropped
    examples = [[[f"w{i}-{k}" for k in range(50)]] for i in range(200)]
    candidates = [[[["r"]] * 50] for _ in range(200)]
    out = mlm_transfer_set(examples, candidates, n_iter=1, seed=0, p_replace=0.4)
    words = [w for (text,) in out for w in text.split()]
    assert len(out) == 200 and len(words) == 10000  # one standard error of the rate is 0.005
    assert words.count("r") / len(words) == pytest.approx(0.4, abs=0.02)
    assert out == mlm_transfer_set(examples, candidates, n_iter=1, seed=0, p_replace=0.4)
    no_options = mlm_transfer_set([[["a", "b"]]], [[[[], []]]], n_iter=5, seed=0, p_replace=1.0)
    assert no_options == []  # nothing to replace: every draw is the original, which is dropped
