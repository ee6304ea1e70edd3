"""Held-out masked-LM quality (top-k, perplexity, agreement with the teacher), relative speed, and sentence
embeddings' correlation with human similarity ratings and agreement with their teacher."""

from .masked_lm import (
    REPORT_FILE,
    RunReport,
    describe_hardware,
    masked_lm_metrics,
    relative_speed,
    time_models,
    whole_model,
)
from .similarity import encoder, lee_similarity, similarity_correlation, teacher_agreement

__all__ = [
    "REPORT_FILE",
    "RunReport",
    "describe_hardware",
    "encoder",
    "lee_similarity",
    "masked_lm_metrics",
    "relative_speed",
    "similarity_correlation",
    "teacher_agreement",
    "time_models",
    "whole_model",
]
