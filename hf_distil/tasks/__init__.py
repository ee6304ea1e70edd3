"""Downstream tasks: datasets (GLUE, IMDb, SQuAD, offline demos), extractive QA spans, transfer-set
augmentation and its offline POS tagger, and offline metric modules."""

from .datasets import MAIN_METRIC, TASKS, encode_pairs, load_task, resolve_model
from .metrics import metric_path

__all__ = ["MAIN_METRIC", "TASKS", "encode_pairs", "load_task", "metric_path", "resolve_model"]
