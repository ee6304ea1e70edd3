"""Correlation with the Lee et al. (2005) human ratings, and agreement of a student's embeddings with its teacher's."""

import math

import numpy as np
import pytest

from hf_distil.evaluation.similarity import (
    lee_documents,
    lee_ratings,
    lee_similarity,
    pair_cosines,
    similarity_correlation,
    teacher_agreement,
)


def test_lee_data_is_50_documents_and_1225_rated_pairs():
    documents, ratings = lee_documents(), lee_ratings()
    assert len(documents) == 50
    assert documents[0].startswith("The national executive of the strife-torn Democrats")
    assert ratings.shape == (1225,)
    assert 0 < ratings.min() and ratings.max() <= 1
    assert ratings[0] == pytest.approx(0.3)  # documents 0 and 1, the file's first row


def test_pair_cosines_are_the_upper_triangle_in_row_order():
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    assert pair_cosines(vectors) == pytest.approx([0.0, 1 / math.sqrt(2), 1 / math.sqrt(2)])


def test_correlation_of_ratings_with_themselves_and_reversed():
    # Embeddings whose pair cosines are chosen: 3 documents, pairs (0,1), (0,2), (1,2).
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cosines = pair_cosines(vectors)
    assert similarity_correlation(vectors, cosines) == pytest.approx({"pearson": 1.0, "spearman": 1.0})
    assert similarity_correlation(vectors, -cosines)["pearson"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="3 pairs"):
        similarity_correlation(vectors, np.ones(4))


def test_packaged_minilm_matches_its_published_lee_figures(minilm_folder):
    """all-MiniLM-L6-v2 through sentence-transformers itself (mean pooled, normalised, 256 tokens)."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = sentence_transformers.SentenceTransformer(str(minilm_folder), device="cpu")
    scores = lee_similarity(model.encode)
    assert round(scores["pearson"], 3) == 0.656
    assert round(scores["spearman"], 3) == 0.508


def test_teacher_agreement():
    teacher = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert teacher_agreement(teacher * 3, teacher) == pytest.approx({"mean_cosine": 1.0, "neighbour_agreement": 1.0})
    # Sentences 1 and 2 swapped: the teacher's nearest neighbours are 1, 0, 3, 2, the student's 2, 3, 0, 1.
    agreement = teacher_agreement(teacher[[0, 2, 1, 3]], teacher)
    assert agreement["neighbour_agreement"] == 0.0
    swapped_cosine = 0.1 / math.sqrt(0.82)  # cos([0, 1], [0.9, 0.1])
    assert agreement["mean_cosine"] == pytest.approx((2 + 2 * swapped_cosine) / 4)
    # A one-wide student: every sentence's nearest is sentence 0 or 1 (ties go to the first), half agree.
    narrower = teacher_agreement(teacher[:, :1] + 1, teacher)
    assert math.isnan(narrower["mean_cosine"]) and narrower["neighbour_agreement"] == 0.5
    with pytest.raises(ValueError, match="n ≥ 2"):
        teacher_agreement(teacher[:1], teacher[:1])
