"""hf_distil: DistilBERT-style distillation of BERT-family encoders on the Hugging Face stack."""

from .bilstm import BiLSTMConfig, BiLSTMForSequenceClassification, bilstm_from_teacher
from .collator import DataCollatorForDistillation
from .config import DistillationArguments
from .data import token_counts
from .errors import RunFailed, UsageError
from .export import export_student
from .hub import push_to_hub
from .student import init_student_from_teacher
from .trainer import DistillationTrainer

__all__ = [
    "BiLSTMConfig",
    "BiLSTMForSequenceClassification",
    "DataCollatorForDistillation",
    "DistillationArguments",
    "DistillationTrainer",
    "RunFailed",
    "UsageError",
    "bilstm_from_teacher",
    "export_student",
    "init_student_from_teacher",
    "push_to_hub",
    "token_counts",
]
