"""Pushing each checkpoint to the Hub while training goes on."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

from ..errors import UsageError
from .card import save_model_card
from .push import push_to_hub, save_training_arguments
from .report import CardReport

logger = logging.get_logger(__name__)


class PushToHubCallback(TrainerCallback):
    """Push each saved checkpoint to the Hub in a background thread, so training does not wait.

    Pushes run one at a time, in order; the last one is awaited at the end of training, and a failed
    push is logged (the checkpoint stays on disk) rather than stopping the run. `card_report`, when given, is
    called at each save for the checkpoint's card (e.g. `DistillationTrainer.card_report`).
    """

    def __init__(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | None = None,
        revision: str | None = None,
        card_report: Callable[[], CardReport] | None = None,
    ) -> None:
        self.repo_id, self.private, self.token, self.revision = repo_id, private, token, revision
        self.card_report = card_report
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf_distil-push")
        self.futures: list[concurrent.futures.Future] = []

    @classmethod
    def from_arguments(
        cls, args: TrainingArguments, card_report: Callable[[], CardReport] | None = None
    ) -> PushToHubCallback:
        """The pusher of `push_to_hub=True` (a trainer adds it in place of Trainer's own push, which uploads
        pickles)."""
        if not args.hub_model_id:
            raise UsageError("push_to_hub=True needs hub_model_id, e.g. --hub_model_id your-name/distilbert-mini.")
        return cls(
            args.hub_model_id,
            private=bool(args.hub_private_repo),
            token=args.hub_token,
            revision=args.hub_revision,
            card_report=card_report,
        )

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        save_training_arguments(args, folder)
        if self.card_report is not None:  # now, while the report describes this checkpoint
            save_model_card(self.card_report(), folder, self.repo_id)
        message = f"Checkpoint at step {state.global_step}"
        self.futures.append(
            self._pool.submit(
                push_to_hub,
                folder,
                self.repo_id,
                private=self.private,
                token=self.token,
                revision=self.revision,
                commit_message=message,
            )
        )

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.wait()

    def wait(self) -> list[str]:
        """Block until every push has finished; returns the commit URLs of those that succeeded."""
        urls = []
        for future in self.futures:
            try:
                urls.append(future.result())
            except Exception as error:  # a failed push must not lose the run: the checkpoint is on disk
                logger.error(f"push to {self.repo_id} failed: {error}")
        return urls
