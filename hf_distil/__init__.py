"""hf_distil: DistilBERT-style distillation of BERT-family encoders on the Hugging Face stack."""

from .config import DistillationArguments
from .data.collator import DataCollatorForDistillation
from .data.corpus import token_counts
from .deploy.export import export_student
from .errors import RunFailed, UsageError
from .hub import push_to_hub
from .models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification, bilstm_from_teacher
from .models.vocabulary import trim_vocabulary
from .student import count_parameters, init_student_from_teacher
from .task_config import TaskDistillationArguments
from .task_trainer import TaskDistillationTrainer, label_with_teacher
from .trainer import DistillationTrainer

__all__ = [
    "BiLSTMConfig",
    "BiLSTMForSequenceClassification",
    "DataCollatorForDistillation",
    "DistillationArguments",
    "DistillationTrainer",
    "RunFailed",
    "TaskDistillationArguments",
    "TaskDistillationTrainer",
    "UsageError",
    "bilstm_from_teacher",
    "count_parameters",
    "export_student",
    "init_student_from_teacher",
    "label_with_teacher",
    "push_to_hub",
    "token_counts",
    "trim_vocabulary",
]
