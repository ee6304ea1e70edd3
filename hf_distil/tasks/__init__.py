"""Downstream tasks: datasets (GLUE, IMDb, SQuAD, offline demos), extractive QA spans, transfer-set
augmentation and its offline POS tagger, and offline metric modules."""

from . import qa
from .augment import TangRates, mlm_candidates, mlm_transfer_set, tang_transfer_set, words_of
from .datasets import MAIN_METRIC, TASKS, encode_pairs, load_task
from .metrics import metric_path
from .pos_tagger import PerceptronTagger

__all__ = [
    "MAIN_METRIC",
    "PerceptronTagger",
    "TASKS",
    "TangRates",
    "encode_pairs",
    "load_task",
    "metric_path",
    "mlm_candidates",
    "mlm_transfer_set",
    "qa",
    "tang_transfer_set",
    "words_of",
]
