"""A single-layer BiLSTM classifier as a Hugging Face model: the student of Tang et al. 2019, "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks" (arXiv:1903.12136).

It reads the teacher's tokenizer output (same vocabulary), so its word embeddings start as the teacher's input
embeddings. One sentence: BiLSTM states max-pooled over the real tokens (or the two final states), then a ReLU
layer and the output layer. A sentence pair (`pair_encoder=True`, the paper's siamese variant): each segment of the
tokenizer's pair encoding (token_type_ids 0 and 1) is encoded alone by the same BiLSTM, and the classifier reads
[a, b, |a − b|, a ⊙ b].

`BiLSTMConfig` and `BiLSTMForSequenceClassification` are registered with the Auto classes when hf_distil is
imported, so save_pretrained / from_pretrained / AutoModelForSequenceClassification / push_to_hub and the ONNX
export treat it as any other classifier.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from ..errors import UsageError
from .layer_map import PROVENANCE_KEY

POOLING = ("max", "last")


class BiLSTMConfig(PretrainedConfig):
    """vocab_size and embedding_size come from the teacher (`bilstm_from_teacher`); hidden_size is per direction.
    The defaults are the paper's single-sentence model (150 units per direction, a 200-unit ReLU layer, dropout
    0.1; castorini/d-bert confs/birnn_sst2.json)."""

    model_type = "hf_distil_bilstm"

    def __init__(
        self,
        vocab_size: int = 30522,
        embedding_size: int = 384,
        hidden_size: int = 150,
        classifier_size: int = 200,
        dropout: float = 0.1,
        pooling: str = "max",
        pair_encoder: bool = False,
        pad_token_id: int = 0,
        **kwargs,
    ) -> None:
        if pooling not in POOLING:
            raise UsageError(f"pooling must be one of {', '.join(POOLING)}, got {pooling!r}.")
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.classifier_size = classifier_size
        self.dropout = dropout
        self.pooling = pooling
        self.pair_encoder = pair_encoder
        # The segments it reads: a pair encoder tells them apart by token type (and heads.model_inputs passes
        # token_type_ids only to models with a type vocabulary).
        self.type_vocab_size = 2 if pair_encoder else 0
        super().__init__(pad_token_id=pad_token_id, **kwargs)


def left_align(ids: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept positions of each row moved to its front, in order; (ids (B, L), mask (B, L) bool).

    Sorting on "position, plus L when dropped" (unique keys) keeps the order without a stable sort, which the
    ONNX export lacks. Splits a pair encoding into its two segments.
    """
    length = ids.shape[1]
    positions = torch.arange(length, device=ids.device).expand_as(ids)
    order = torch.argsort(positions + (~keep).long() * length, dim=1)
    return ids.gather(1, order), keep.gather(1, order)


class BiLSTMForSequenceClassification(PreTrainedModel):
    config_class = BiLSTMConfig
    base_model_prefix = "bilstm"
    main_input_name = "input_ids"

    def __init__(self, config: BiLSTMConfig) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.lstm = nn.LSTM(config.embedding_size, config.hidden_size, batch_first=True, bidirectional=True)
        features = 2 * config.hidden_size * (4 if config.pair_encoder else 1)
        self.dropout = nn.Dropout(config.dropout)
        self.dense = nn.Linear(features, config.classifier_size)
        self.out = nn.Linear(config.classifier_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def encode(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, 2H): the BiLSTM over the real tokens of left-aligned rows, max-pooled or its two final states.

        Packing makes the backward direction start at each row's last real token, not at its padding: the same
        numbers for a sentence alone and inside a padded batch. An empty row counts as one (padding) token.
        """
        lengths = mask.sum(1).clamp(min=1)
        embedded = self.embeddings(input_ids)
        if input_ids.shape[1] and bool(mask.all()) and not torch.onnx.is_in_onnx_export():
            # No padding (a sentence alone): packing changes no number and cost 23% of the batch-1 time (measured,
            # 19 tokens, one thread: 1.01 → 0.78 ms). The export keeps the packed path, which every batch needs.
            states, _ = self.lstm(embedded)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
            states, _ = nn.utils.rnn.pad_packed_sequence(
                self.lstm(packed)[0], batch_first=True, total_length=input_ids.shape[1]
            )
        if self.config.pooling == "max":  # padding masked here: the ONNX export ignores pad_packed's padding_value
            real = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] < lengths[:, None]
            return states.masked_fill(~real[..., None], float("-inf")).max(dim=1).values  # (B, 2H)
        # The final states: forward after the last real token, backward after the first. Read from `states` rather
        # than the LSTM's own final-state output, which the ONNX exporter cannot handle for a packed sequence.
        hidden = self.config.hidden_size
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, hidden)
        return torch.cat([states[:, :, :hidden].gather(1, last).squeeze(1), states[:, 0, hidden:]], dim=-1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        if self.config.pair_encoder:
            if token_type_ids is None:
                raise ValueError("a pair encoder needs token_type_ids to find the two segments of each pair")
            second = token_type_ids.bool()
            a = self.encode(*left_align(input_ids, mask & ~second))
            b = self.encode(*left_align(input_ids, mask & second))
            features = torch.cat([a, b, (a - b).abs(), a * b], dim=-1)
        else:
            features = self.encode(input_ids, mask)
        logits = self.out(self.dropout(torch.relu(self.dense(self.dropout(features)))))
        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.float())
            else:
                loss = nn.functional.cross_entropy(logits, labels)
        if return_dict is False:
            return (logits,) if loss is None else (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def bilstm_from_teacher(teacher: PreTrainedModel, num_labels: int, **config_kwargs) -> BiLSTMForSequenceClassification:
    """A BiLSTM student for `teacher`'s tokenizer, its word embeddings copied from the teacher's input embeddings.

    `config_kwargs` set the rest of `BiLSTMConfig` (hidden_size, pooling, pair_encoder, ...). The teacher's name
    and size are recorded in the config, as `init_student_from_teacher` does, for the model card.
    """
    embeddings = teacher.get_input_embeddings().weight
    config = BiLSTMConfig(
        vocab_size=embeddings.shape[0],
        embedding_size=embeddings.shape[1],
        pad_token_id=teacher.config.pad_token_id or 0,
        num_labels=num_labels,
        **config_kwargs,
    )
    setattr(
        config,
        PROVENANCE_KEY,
        {
            "teacher": teacher.config.name_or_path or None,
            "teacher_parameters": teacher.num_parameters(),
            "teacher_num_layers": getattr(teacher.config, "num_hidden_layers", None),
        },
    )
    student = BiLSTMForSequenceClassification(config)
    with torch.no_grad():
        assert student.embeddings.weight.shape == embeddings.shape, (student.embeddings.weight.shape, embeddings.shape)
        student.embeddings.weight.copy_(embeddings)
    return student


def non_embedding_parameters(model: nn.Module) -> int:
    """Parameters outside the input embeddings: the paper's count (its ~100x fewer excludes word vectors)."""
    return model.num_parameters() - model.get_input_embeddings().weight.numel()


AutoConfig.register(BiLSTMConfig.model_type, BiLSTMConfig, exist_ok=True)
AutoModelForSequenceClassification.register(BiLSTMConfig, BiLSTMForSequenceClassification, exist_ok=True)
