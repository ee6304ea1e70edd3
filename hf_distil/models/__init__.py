"""Model-side pieces: running a model with its LM head at chosen rows, layer maps, the width projection, the other
student architectures (BiLSTM, MobileBERT), vocabulary trimming, and the pooling and saved layout of sentence
embedders."""

from .bilstm import BiLSTMConfig, BiLSTMForSequenceClassification, bilstm_from_teacher, non_embedding_parameters
from .heads import hidden_and_row_logits
from .layer_map import PROVENANCE_KEY, plan_layers, plan_relation
from .mobilebert import mobilebert_student
from .pooling import Pooling, folder_max_seq_length, sentence_transformers_folder
from .projection import HiddenProjection
from .sentence_layout import save_sentence_transformers_layout
from .vocabulary import (
    PRIOR_WEIGHT,
    TrimmedVocabulary,
    choose_vocabulary,
    keep_vocabulary_rows,
    kept_teacher_ids,
    mass_outside,
    restrict_teacher,
    trim_tokenizer,
    trim_vocabulary,
)

__all__ = [
    "BiLSTMConfig",
    "BiLSTMForSequenceClassification",
    "HiddenProjection",
    "PRIOR_WEIGHT",
    "PROVENANCE_KEY",
    "Pooling",
    "TrimmedVocabulary",
    "bilstm_from_teacher",
    "choose_vocabulary",
    "folder_max_seq_length",
    "hidden_and_row_logits",
    "keep_vocabulary_rows",
    "kept_teacher_ids",
    "mass_outside",
    "mobilebert_student",
    "non_embedding_parameters",
    "plan_layers",
    "plan_relation",
    "restrict_teacher",
    "save_sentence_transformers_layout",
    "sentence_transformers_folder",
    "trim_tokenizer",
    "trim_vocabulary",
]
