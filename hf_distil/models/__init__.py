"""Model-side pieces: running a model with its LM head at chosen rows, layer maps, the width projection, and
the other student architectures (BiLSTM, MobileBERT)."""

from .bilstm import BiLSTMConfig, BiLSTMForSequenceClassification, bilstm_from_teacher
from .layer_map import PROVENANCE_KEY, plan_layers, plan_relation
from .mobilebert import mobilebert_student
from .projection import HiddenProjection

__all__ = [
    "BiLSTMConfig",
    "BiLSTMForSequenceClassification",
    "HiddenProjection",
    "PROVENANCE_KEY",
    "bilstm_from_teacher",
    "mobilebert_student",
    "plan_layers",
    "plan_relation",
]
