"""SQuAD windows, answer labels and spans back from logits (hf_distil/qa.py): small literal inputs, exact outputs."""

from __future__ import annotations

import numpy as np
import pytest

from hf_distil.tasks import qa

# Context tokens (character spans): the (0,3) cat (4,7) sat (8,11) on (12,14) the (15,18) mat (19,22) and (23,26)
# the (27,30) dog (31,34) ran (35,38). The question "where is the cat" is 4 tokens ("where" is [UNK]), so a window
# of 12 tokens is [CLS] + 4 + [SEP] + 5 context tokens + [SEP]; stride 2: consecutive windows share 2 tokens.
CONTEXT = "the cat sat on the mat and the dog ran"
WINDOWS = [
    "[CLS] [UNK] is the cat [SEP] the cat sat on the [SEP]",
    "[CLS] [UNK] is the cat [SEP] on the mat and the [SEP]",
    "[CLS] [UNK] is the cat [SEP] and the dog ran [SEP]",
]
OFFSETS = [
    [None] * 6 + [(0, 3), (4, 7), (8, 11), (12, 14), (15, 18), None],
    [None] * 6 + [(12, 14), (15, 18), (19, 22), (23, 26), (27, 30), None],
    [None] * 6 + [(23, 26), (27, 30), (31, 34), (35, 38), None],
]


def squad(answer: str, start: int | None = None, context: str = CONTEXT, question: str = "where is the cat") -> dict:
    start = context.index(answer) if start is None else start
    return {
        "id": ["q0"],
        "question": [question],
        "context": [context],
        "answers": [{"text": [answer], "answer_start": [start]}],
    }


def tokens(tokenizer, features: dict) -> list[str]:
    return [" ".join(tokenizer.convert_ids_to_tokens(ids)) for ids in features["input_ids"]]


def test_windows_share_stride_tokens_and_keep_character_offsets(tokenizer):
    features = qa.eval_features(squad("mat"), tokenizer, max_length=12, stride=2)
    assert tokens(tokenizer, features) == WINDOWS
    assert features["offset_mapping"] == OFFSETS  # None on the question, [CLS], [SEP]: no span can start there
    assert features["example_id"] == ["q0", "q0", "q0"]
    assert set(features) == {"input_ids", "token_type_ids", "attention_mask", "offset_mapping", "example_id"}


@pytest.mark.parametrize(
    "answer, start, labels",
    [
        ("mat", None, [(0, 0), (8, 8), (0, 0)]),  # only the middle window holds it
        ("the mat", 15, [(0, 0), (7, 8), (0, 0)]),  # cut by the end of window 1: [CLS] there, not half a span
        ("on the", None, [(9, 10), (6, 7), (0, 0)]),  # the last tokens of window 1, the first of window 2
        ("the", 0, [(6, 6), (0, 0), (0, 0)]),  # the first "the", not a later one
        ("ran", None, [(0, 0), (0, 0), (9, 9)]),  # the very last context token
        ("at", 5, [(7, 7), (0, 0), (0, 0)]),  # a span inside a token labels the whole token
    ],
)
def test_train_labels_point_at_the_answer_tokens_or_cls(tokenizer, answer, start, labels):
    features = qa.train_features(squad(answer, start), tokenizer, max_length=12, stride=2)
    assert list(zip(features["start_positions"], features["end_positions"], strict=True)) == labels
    assert "offset_mapping" not in features and "overflow_to_sample_mapping" not in features  # not model inputs


@pytest.mark.parametrize("answer, pieces", [("playing", ["play", "##ing"]), ("ing", ["##ing"]), ("play", ["play"])])
def test_labelled_tokens_cover_exactly_the_answer_characters(tokenizer, answer, pieces):
    context = "The Cat was playing on the mat"  # play (12, 16) ##ing (16, 19)
    features = qa.train_features(squad(answer, context.rindex(answer), context), tokenizer, max_length=32, stride=2)
    (ids,), start, end = features["input_ids"], features["start_positions"][0], features["end_positions"][0]
    assert tokenizer.convert_ids_to_tokens(ids[start : end + 1]) == pieces


def logits_for(
    features: dict, picks: dict[tuple[int, int], float], length: int = 12, base: float = 0.0, pad: float = -100.0
) -> np.ndarray:
    """(windows, length) logits: `base` on a window's tokens, `pad` past its end, `picks` {(window, token): value}."""
    out = np.full((len(features["offset_mapping"]), length), pad, dtype=np.float32)
    for w, offsets in enumerate(features["offset_mapping"]):
        out[w, : len(offsets)] = base
    for (w, t), value in picks.items():
        out[w, t] = value
    return out


@pytest.fixture
def windows(tokenizer) -> tuple[dict, dict]:
    examples = squad("mat")
    return examples, qa.eval_features(examples, tokenizer, max_length=12, stride=2)


def test_best_span_is_the_exact_substring_of_the_best_window(windows):
    examples, features = windows
    start = logits_for(features, {(0, 7): 1.0, (1, 7): 3.0})  # window 0: "cat"; window 1: "the"
    end = logits_for(features, {(0, 8): 1.0, (1, 8): 3.0})  # window 0: "sat"; window 1: "mat"
    assert qa.best_spans(examples, features, start, end) == {"q0": "the mat"}
    start[0, 7] = end[0, 8] = 4.0  # now window 0's span scores 8 > 6
    assert qa.best_spans(examples, features, start, end) == {"q0": "cat sat"}


def test_spans_never_start_or_end_outside_the_context_nor_run_backwards(windows):
    examples, features = windows
    # The best raw scores sit on [CLS], a question token and [SEP] (skipped), then on start "ran" (window 2,
    # token 9) with end "dog" (token 8), which runs backwards (skipped). Left: "dog" alone, 5 + 30.
    start = logits_for(features, {(0, 0): 50.0, (1, 3): 40.0, (2, 9): 30.0, (2, 8): 5.0})
    end = logits_for(features, {(0, 11): 50.0, (1, 2): 40.0, (2, 8): 30.0})
    assert qa.best_spans(examples, features, start, end) == {"q0": "dog"}


def test_padding_past_a_window_is_never_read(windows):
    examples, features = windows
    # Window 2 has 11 tokens; position 11 is padding (Trainer pads predictions of shorter windows).
    start = logits_for(features, {(2, 6): 1.0}, pad=99.0)
    end = logits_for(features, {(2, 7): 1.0}, pad=99.0)
    assert qa.best_spans(examples, features, start, end) == {"q0": "and the"}


def test_answer_length_and_n_best_limits(windows):
    examples, features = windows
    first = {k: v[:1] for k, v in features.items()}  # window 0 alone: "the cat sat on the" at tokens 6-10
    start = logits_for(first, {(0, 6): 5.0, (0, 9): 2.0}, base=-10.0)
    end = logits_for(first, {(0, 10): 5.0, (0, 9): 4.0}, base=-10.0)
    assert qa.best_spans(examples, first, start, end) == {"q0": "the cat sat on the"}  # 5 tokens, score 10
    assert qa.best_spans(examples, first, start, end, max_answer_tokens=4) == {"q0": "the cat sat on"}  # 9
    # Only the n_best highest starts and ends are paired: with 1 each, the one pair is too long.
    assert qa.best_spans(examples, first, start, end, n_best=1, max_answer_tokens=4) == {"q0": ""}
    assert qa.best_spans(examples, first, start, end, n_best=2, max_answer_tokens=4) == {"q0": "the cat sat on"}


def test_every_example_gets_an_answer_and_one_without_windows_gets_the_empty_string(tokenizer):
    examples = {
        "id": ["a", "b"],
        "question": ["is the cat", "is the dog"],
        "context": ["The CAT sat", "a dog ran"],
        "answers": [{"text": ["CAT"], "answer_start": [4]}, {"text": ["dog"], "answer_start": [2]}],
    }
    features = qa.eval_features(examples, tokenizer, max_length=32, stride=4)
    assert features["example_id"] == ["a", "b"]
    start = logits_for(features, {(0, 6): 2.0, (1, 6): 2.0}, length=16)
    end = logits_for(features, {(0, 6): 2.0, (1, 6): 2.0}, length=16)
    assert qa.best_spans(examples, features, start, end) == {"a": "CAT", "b": "dog"}  # the context's own casing
    only_a = {k: v[:1] for k, v in features.items()}
    assert qa.best_spans(examples, only_a, start[:1], end[:1]) == {"a": "CAT", "b": ""}
