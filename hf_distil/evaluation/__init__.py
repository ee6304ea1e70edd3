"""Held-out masked-LM quality (top-k, perplexity, agreement with the teacher) and relative speed."""

from .masked_lm import describe_speedup, masked_lm_metrics, relative_speed, time_models

__all__ = ["describe_speedup", "masked_lm_metrics", "relative_speed", "time_models"]
