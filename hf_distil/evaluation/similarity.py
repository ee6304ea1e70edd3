"""Sentence-embedding quality: correlation with human similarity judgments, and agreement with the teacher.

The human judgments are Lee, Pincombe & Welsh (2005): 50 short news documents, each pair rated for similarity by
about ten people (the mean rating per pair, 0 to 1). gensim ships both in its test data (`lee.cor`,
`similarities0-1.txt`), so the evaluation runs offline. A model's score is the correlation, over the 1,225 pairs,
of the cosine similarity of its embeddings with the human rating: Pearson (the values) and Spearman (the ranks).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..models.pooling import Pooling

LEE_DOCUMENTS = "lee.cor"
LEE_RATINGS = "similarities0-1.txt"
LEE_SIZE = 50

Encode = Callable[[list[str]], np.ndarray]  # texts -> (len(texts), width) embeddings


def _gensim_test_file(name: str) -> Path:
    try:
        import gensim
    except ImportError as error:
        raise ImportError("the Lee similarity data ships with gensim: pip install gensim==4.4.0") from error
    return Path(gensim.__file__).parent / "test" / "test_data" / name


def lee_documents() -> list[str]:
    """The 50 documents of Lee et al. (2005), one per line of `lee.cor` (latin-1 text)."""
    lines = _gensim_test_file(LEE_DOCUMENTS).read_text(encoding="latin-1").splitlines()
    documents = [line.strip() for line in lines if line.strip()]
    assert len(documents) == LEE_SIZE, f"{LEE_DOCUMENTS}: {len(documents)} documents, expected {LEE_SIZE}"
    return documents


def lee_ratings() -> np.ndarray:
    """The mean human rating of each document pair (i < j), (1225,), in the row-major order of `np.triu_indices`.

    The file is the upper triangle of a 50 × 50 matrix (ones on the diagonal, zeros below it).
    """
    matrix = np.loadtxt(_gensim_test_file(LEE_RATINGS))
    assert matrix.shape == (LEE_SIZE, LEE_SIZE), f"{LEE_RATINGS}: shape {matrix.shape}"
    return matrix[np.triu_indices(LEE_SIZE, k=1)]


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float64)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(min=1e-12)


def pair_cosines(embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair of rows (i < j), in `np.triu_indices` order: (n, width) → (n(n-1)/2,)."""
    unit = _unit_rows(embeddings)
    return (unit @ unit.T)[np.triu_indices(len(unit), k=1)]


def similarity_correlation(embeddings: np.ndarray, ratings: np.ndarray) -> dict[str, float]:
    """{"pearson", "spearman"}: correlation of the pairs' cosine similarities with their human `ratings`."""
    cosines = pair_cosines(embeddings)
    if cosines.shape != np.shape(ratings):
        raise ValueError(f"{len(embeddings)} embeddings give {len(cosines)} pairs; the ratings hold {len(ratings)}")
    return {
        "pearson": float(stats.pearsonr(cosines, ratings).statistic),
        "spearman": float(stats.spearmanr(cosines, ratings).statistic),
    }


def lee_similarity(encode: Encode) -> dict[str, float]:
    """{"pearson", "spearman"} of `encode` (texts → embeddings) on the Lee et al. (2005) human ratings."""
    return similarity_correlation(encode(lee_documents()), lee_ratings())


def teacher_agreement(student: np.ndarray, teacher: np.ndarray) -> dict[str, float]:
    """How closely a student's embeddings of some sentences follow its teacher's, both (n, width), n ≥ 2:

    mean_cosine: the mean cosine between each sentence's student and teacher embeddings (same width only: a
      narrower student is compared through its neighbours alone, and this is NaN);
    neighbour_agreement: the share of sentences whose nearest other sentence (by cosine) is the same under both,
      what a search over these sentences would return first.
    """
    student, teacher = _unit_rows(student), _unit_rows(teacher)
    if len(student) != len(teacher) or len(student) < 2:
        raise ValueError(f"need the same n ≥ 2 sentences on both sides, got {len(student)} and {len(teacher)}")
    same_width = student.shape[1] == teacher.shape[1]
    mean_cosine = float(np.mean(np.sum(student * teacher, axis=1))) if same_width else float("nan")
    return {
        "mean_cosine": mean_cosine,
        "neighbour_agreement": float(np.mean(_nearest_other(student) == _nearest_other(teacher))),
    }


def _nearest_other(unit: np.ndarray) -> np.ndarray:
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(axis=1)


def encoder(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pooling: Pooling,
    max_length: int = 256,
    batch_size: int = 32,
) -> Encode:
    """`encode` for a plain transformers encoder (AutoModel): its last hidden states pooled as `pooling` says, texts
    cut at `max_length` tokens, as sentence-transformers encodes a model saved in its layout."""

    @torch.inference_mode()
    def encode(texts: list[str]) -> np.ndarray:
        was_training = model.training
        model.eval()
        out = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(model.device)
            states = model(**batch).last_hidden_state  # (batch, seq, width)
            out.append(pooling(states, batch["attention_mask"]).cpu().numpy())
        model.train(was_training)
        return np.concatenate(out)

    return encode
