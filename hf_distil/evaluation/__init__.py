"""Held-out masked-LM quality (top-k, perplexity, agreement with the teacher) and relative speed."""

from .masked_lm import (
    REPORT_FILE,
    RunReport,
    describe_hardware,
    masked_lm_metrics,
    relative_speed,
    time_models,
    whole_model,
)

__all__ = [
    "REPORT_FILE",
    "RunReport",
    "describe_hardware",
    "masked_lm_metrics",
    "relative_speed",
    "time_models",
    "whole_model",
]
