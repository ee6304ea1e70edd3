"""Publishing to the Hugging Face Hub: model cards rendered from a typed report, the loss plot, `push_to_hub`
(safetensors and JSON, never pickles) and a callback that pushes each checkpoint.

A leaf of the package: it imports nothing of hf_distil but its errors, and states only what it is handed."""

from .callback import PushToHubCallback
from .card import (
    EMBEDDING_STUDENT_LABEL,
    describe_speedup,
    render_bilstm_card,
    render_embedding_card,
    render_model_card,
    save_model_card,
)
from .plot import loss_figure, plot_loss_terms
from .push import push_to_hub, save_training_arguments
from .report import (
    BiLSTMCardReport,
    CardReport,
    CpuTime,
    EmbeddingCardReport,
    HeldOut,
    Masking,
    OnnxExport,
    Score,
    Similarity,
    Speed,
)

__all__ = [
    "BiLSTMCardReport",
    "CardReport",
    "CpuTime",
    "EMBEDDING_STUDENT_LABEL",
    "EmbeddingCardReport",
    "HeldOut",
    "Masking",
    "OnnxExport",
    "PushToHubCallback",
    "Score",
    "Similarity",
    "Speed",
    "describe_speedup",
    "loss_figure",
    "plot_loss_terms",
    "push_to_hub",
    "render_bilstm_card",
    "render_embedding_card",
    "render_model_card",
    "save_model_card",
    "save_training_arguments",
]
