"""Model-side pieces: running a model with its LM head at chosen rows, layer maps, the width projection, and
the other student architectures (BiLSTM, MobileBERT), and the pooling and saved layout of sentence embedders."""

from .bilstm import BiLSTMConfig, BiLSTMForSequenceClassification, bilstm_from_teacher, non_embedding_parameters
from .heads import hidden_and_row_logits
from .layer_map import PROVENANCE_KEY, plan_layers, plan_relation
from .mobilebert import mobilebert_student
from .pooling import Pooling, folder_max_seq_length
from .projection import HiddenProjection
from .sentence_layout import save_sentence_transformers_layout

__all__ = [
    "BiLSTMConfig",
    "BiLSTMForSequenceClassification",
    "HiddenProjection",
    "PROVENANCE_KEY",
    "Pooling",
    "bilstm_from_teacher",
    "folder_max_seq_length",
    "hidden_and_row_logits",
    "mobilebert_student",
    "non_embedding_parameters",
    "plan_layers",
    "plan_relation",
    "save_sentence_transformers_layout",
]
