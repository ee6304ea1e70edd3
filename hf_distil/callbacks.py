"""Trainer callbacks that plug distillation behaviour into any Trainer set-up."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


class MaskingEpochCallback(TrainerCallback):
    """Tells a collator with `set_epoch` (DataCollatorForDistillation) which epoch is starting, so each
    epoch draws new masks while a resumed run draws the same ones."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.collator.set_epoch(int(state.epoch or 0))
