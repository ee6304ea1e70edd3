"""The sentences an embedder is distilled on: split from the offline corpora, never the rated documents."""

import datasets
import pytest

from hf_distil.data import DataArguments
from hf_distil.data.sentence_corpus import news_background, sentence_splits, split_sentences
from hf_distil.errors import UsageError
from hf_distil.evaluation.similarity import lee_documents


def test_split_sentences_cuts_after_end_marks_and_drops_fragments():
    text = "The cat sat on the mat. Did it? Yes! It stayed there all day long.  See also: cats"
    assert split_sentences([text]) == ["The cat sat on the mat.", "It stayed there all day long."]
    assert split_sentences([text], min_words=1) == [
        "The cat sat on the mat.",
        "Did it?",
        "Yes!",
        "It stayed there all day long.",
        "See also: cats",
    ]


def test_news_background_shares_no_sentence_with_the_rated_documents():
    background = news_background()
    assert len(background) == 300
    rated = set(split_sentences(lee_documents()))
    assert len(rated) > 100 and not rated & set(split_sentences(background))


def test_a_users_file_is_read_as_given_one_text_per_line(tmp_path):
    lines = ["first text. It has two sentences.", "", "second text", "third", "fourth", "fifth"] * 4
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    splits = sentence_splits(DataArguments(train_file=str(tmp_path / "train.txt"), max_train_samples=5))
    assert isinstance(splits, datasets.DatasetDict) and len(splits["train"]) == 5
    texts = [*splits["train"]["text"], *splits["test"]["text"]]
    assert "first text. It has two sentences." in texts
    assert all(text.strip() for text in texts)


def test_a_single_held_out_text_is_one_line(tmp_path):
    (tmp_path / "train.txt").write_text("one sentence\nanother sentence\n")
    (tmp_path / "valid.txt").write_text("only one\n")
    data_args = DataArguments(train_file=str(tmp_path / "train.txt"), validation_file=str(tmp_path / "valid.txt"))
    with pytest.raises(UsageError, match="the test texts hold 1 non-empty line"):
        sentence_splits(data_args)
