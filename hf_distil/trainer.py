"""`DistillationTrainer`: Trainer glue around the pure losses (two forwards, one loss, per-term logs)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, NamedTuple

import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer
from transformers.trainer_utils import TrainOutput, get_last_checkpoint
from transformers.utils import logging

from . import hub
from .batch_terms import BatchTermsMixin
from .callbacks import LossScheduleCallback, MaskingEpochCallback
from .config import DistillationArguments, loss_weights
from .data.collator import check_vocabulary
from .data.corpus import datasets_from_text
from .data.sentences import (
    SENTENCE_COLUMNS,
    SentenceCollator,
    has_triplets,
    is_sentence_dataset,
    same_tokenization,
    split_teacher_inputs,
)
from .errors import UsageError
from .launch import check_fsdp_layer_classes, keep_freed_memory
from .losses.pooled import cached_term
from .losses.schedules import check_schedules
from .losses.terms import COUNTS, HEAD_TERMS, IGNORE_INDEX, LOGIT_TERMS, LOSS_TERMS, POOLED_TERMS, distillation_loss
from .model_card import training_card_report
from .models import heads
from .models.layer_map import RelationPlan, plan_layers, plan_relation
from .models.pooling import Pooling, folder_max_seq_length, sentence_transformers_folder
from .models.projection import HiddenProjection
from .run_folder import (
    check_checkpoint,
    readable_like_other_files,
    refuse_source_folders,
    run_settings,
    save_run_settings,
)
from .similarity_cache import SIMILARITY_KEY, SimilarityCacheMixin, SimilarityShare
from .student import kept_teacher_layers
from .teachers.cache import CACHE_COLUMNS
from .teachers.prepare import Teachers, TeacherSignals

logger = logging.get_logger(__name__)

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class _Reads(NamedTuple):
    """What this step's active terms read from the forwards, as keyword arguments of each side's forward."""

    student: dict[str, Any]  # of models.heads.hidden_and_row_logits
    teacher: dict[str, Any]  # of Teachers.signals
    causal: bool  # a causal student: full logits, next-token labels


class DistillationTrainer(SimilarityCacheMixin, BatchTermsMixin, Trainer):
    """Trains `model` (the student) to imitate `teacher_model` with DistilBERT's triple loss.

    Every term of `DistillationArguments` is normalised by the count of its items over the whole
    accumulated and gathered batch, so gradient accumulation and data parallelism give the gradients of
    one large batch (GA=2 × b equals GA=1 × 2b). `teacher_model=None` trains with L_mlm / L_clm alone
    (the baseline that distillation must beat).

    Sentence embeddings: the pooled terms (alpha_embedding_mse, alpha_embedding_cos, alpha_similarity_kl,
    alpha_margin_mse) compare both models' last hidden states pooled by `pooling` (default: the teacher's Sentence
    Transformers folder's pooling, else mean and normalised; `trainer.pooling`). They need no LM head: plain
    `AutoModel` student and teacher train with them (and the layer terms). A dataset of raw sentences (a "text"
    column, or "query", "positive", "negative") is tokenised per batch (`SentenceCollator`), by the student's
    `processing_class` and, when it tokenises differently, by `teacher_processing_class` for the teacher:
    token-level terms are then refused.
    """

    loss_is_scaled_for_ga = True  # each term is divided by its count over the accumulated batch
    # L_ce and L_mlm run the student's and the teacher's vocabulary projection inside the loss, chunk by chunk
    # (fused_linear.py), where the student's head can be split; False materialises the rows' logits instead.
    projection_in_loss = True
    _tag_names = ["distillation", "distilbert", "hf_distil"]

    def __init__(
        self,
        model: PreTrainedModel,
        teacher_model: PreTrainedModel | str | list[PreTrainedModel | str] | None = None,
        args: DistillationArguments | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | None = None,
        data_collator: Any = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        teacher_processing_class: PreTrainedTokenizerBase | None = None,
        pooling: Pooling | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, DistillationArguments):
            raise TypeError(
                f"args must be DistillationArguments, got {type(args).__name__}; build it like TrainingArguments."
            )
        # Teachers: loaded and checked now, placed once the accelerator exists (below).
        weights = loss_weights(args)
        self._active = active = _active_terms(args)
        own_tokenizer = _reads_its_own_tokens(teacher_processing_class, processing_class, active)
        _check_heads(model, active)
        cached = set(CACHE_COLUMNS) <= set(getattr(train_dataset, "column_names", None) or [])
        self.teachers = Teachers.build(
            teacher_model,
            model,
            weights=args.teacher_weights,
            loss_weights=weights,
            cached_soft_targets=cached,
            own_tokenizer=own_tokenizer,
        )
        self.teacher_name = self.teachers.name
        refuse_source_folders(args.output_dir, [("the teacher", t.name_or_path) for t in self.teachers.models])
        # What a checkpoint must share with a run that resumes it (saved beside every model; see run_folder.py).
        # Recipes add what the trainer cannot see, e.g. which teacher layers the student was cut from.
        self.run_settings = run_settings(args, self.teachers.models, model, train_dataset)
        for tokenizer in (processing_class, getattr(data_collator, "tokenizer", None)):
            if isinstance(tokenizer, PreTrainedTokenizerBase):  # it fits the student, hence the teachers
                check_vocabulary(tokenizer, model)
        if own_tokenizer:
            check_vocabulary(teacher_processing_class, self.teachers.first, role="teacher")
        # Layer terms: which layers pair up, the attention they read, a width projection if the widths differ.
        teacher, source = self.teachers.first, kept_teacher_layers(model)
        plan = plan_layers(model, teacher, args.intermediate_layers, weights, args.attention_maps, source)
        if plan.eager_attention:  # only eager attention returns its probabilities
            logger.warning(
                "alpha_attention_mse compares attention probabilities: student and teacher now run eager attention."
            )
            for m in (model, teacher):
                m.set_attn_implementation("eager")
        self.layer_pairs = plan.pairs
        # The sentence embeddings: pooled as the teacher's Sentence Transformers folder says, else mean, normalised.
        # (A Hub id's settings are fetched only when a pooled term uses them.)
        self.pooling = pooling or _folder_pooling(teacher, hub=bool(active & set(POOLED_TERMS))) or Pooling()
        self.run_settings["pooling"] = [self.pooling.mode, self.pooling.normalize]
        compares_embeddings = active & {"embedding_mse", "embedding_cos"}
        projected = teacher is not None and (plan.pairs or compares_embeddings)
        self.hidden_projection = HiddenProjection.between(model, teacher) if projected else None
        self.relation: RelationPlan | None = None
        if teacher is not None and (weights["relation"] > 0 or "alpha_relation" in args.loss_schedules):
            self.relation = plan_relation(model, teacher, args.relation_heads, args.relation_teacher_layer)
        # Raw text (a "text" column) goes through the corpus pipeline and the masking collator, as TRL's trainers take
        # raw text; tokenised datasets and a given collator pass unchanged. Sentences for pooled terms alone are
        # tokenised per batch, by each model's own tokenizer (SentenceCollator).
        if _sentence_data(active, train_dataset, eval_dataset, own_tokenizer):
            data_collator = data_collator or _sentence_collator(
                model, teacher, processing_class, teacher_processing_class if own_tokenizer else None
            )
        else:
            train_dataset, eval_dataset, data_collator = datasets_from_text(
                model, args, processing_class, train_dataset, eval_dataset, data_collator
            )
        if args.push_to_hub:  # checkpoints go up through our callback: Trainer's own push uploads pickles
            pusher = hub.PushToHubCallback.from_arguments(args, card_report=self.card_report)
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), pusher]
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=data_collator,
            processing_class=processing_class,
            **kwargs,
        )
        if self.hidden_projection is not None:
            self.hidden_projection.place(
                self.args.device,
                self.accelerator.num_processes,
                sharded=self.is_deepspeed_enabled or self.is_fsdp_enabled,
            )
        if self.is_fsdp_enabled:
            check_fsdp_layer_classes(model, self.accelerator.state.fsdp_plugin.transformer_cls_names_to_wrap)
        self.teachers.prepare(self.accelerator, args.teacher_dtype)
        if args.fp16 and self.args.device.type == "cpu":
            logger.warning(
                "--fp16 on a CPU: fp16 autocast without loss scaling (no GradScaler on CPUs), so small gradients "
                "may underflow; --bf16 keeps fp32's range."
            )
        if args.cpu_keep_freed_memory and self.args.device.type == "cpu":
            keep_freed_memory()
        if hasattr(self.data_collator, "set_epoch"):
            self.add_callback(MaskingEpochCallback(self.data_collator))
        self.schedule = LossScheduleCallback(check_schedules(args.loss_schedules)) if args.loss_schedules else None
        if self.schedule is not None:
            self.add_callback(self.schedule)

    @property
    def weights(self) -> dict[str, float]:
        """{term: weight} of the current step: the arguments' values, moved along their schedules if any."""
        return loss_weights(self.args, self.schedule.current if self.schedule is not None else None)

    @property
    def teacher(self) -> Any:
        """The first teacher, prepared (a DeepSpeed engine under ZeRO); None without one."""
        return self.teachers.first

    @property
    def temperature(self) -> float:
        return (
            self.schedule.current.get("temperature", self.args.temperature) if self.schedule else self.args.temperature
        )

    def autocast_smart_context_manager(self, cache_enabled: bool | None = True) -> contextlib.AbstractContextManager:
        """--fp16/--bf16 autocast around the student's and the teachers' forwards; compute_loss turns it off for the
        loss maths. Accelerate autocasts only a prepared model's own forward, which the split path (models.heads)
        and the teachers bypass: without this they would run in fp32. On a CPU Accelerate ignores --fp16 (it has no
        GradScaler there); fp16 autocast runs here all the same, unscaled. DeepSpeed casts the weights itself."""
        dtype = _AUTOCAST_DTYPES.get(self.accelerator.mixed_precision)
        if dtype is None or self.is_deepspeed_enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.args.device.type, dtype=dtype, cache_enabled=cache_enabled)

    def _clip_grad_norm(self, model: nn.Module) -> torch.Tensor:
        """Clip the student and the projection together: one norm over everything the optimizer updates."""
        if self.hidden_projection is None:
            return super()._clip_grad_norm(model)
        self.hidden_projection.average_gradients(self.state.global_step)
        return self.accelerator.clip_grad_norm_(
            [*model.parameters(), *self.hidden_projection.parameters()], self.args.max_grad_norm
        )

    @property
    def _attention_pairs(self) -> list[tuple[int, int]]:
        """Layer pairs without the embeddings (0), which have no attention."""
        return [(i, j) for i, j in self.layer_pairs if i > 0 and j > 0]

    def create_optimizer(self, *args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(*args, **kwargs)
        if self.hidden_projection is not None:
            self.hidden_projection.add_to(optimizer, lambda: self.state.global_step)
        return optimizer

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> TrainOutput:
        """Trainer.train, once the checkpoint to resume from is known intact and made with these settings; the width
        projection resumes from it too."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True and Path(self.args.output_dir).is_dir():
            checkpoint = get_last_checkpoint(self.args.output_dir)
        if checkpoint and checkpoint is not True:
            check_checkpoint(checkpoint, self.run_settings)
            if self.hidden_projection is not None:  # Trainer restores the student and the optimizer, not this
                self.hidden_projection.load(checkpoint, self.args.device)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Trainer's save, plus: the run's settings (run_folder.py) and the width projection beside the student;
        no Hub token inside training_args.bin (a pickle of the arguments in every checkpoint); safetensors files
        readable like the others (safetensors writes them 0600 whatever the umask); a gathered state dict (FSDP,
        ZeRO-3) without the copies of tied weights, as one process saves it."""
        if state_dict is not None:
            state_dict = _without_tied_copies(state_dict, self.accelerator.unwrap_model(self.model))
        token, self.args.hub_token = self.args.hub_token, None
        try:
            super()._save(output_dir, state_dict)
        finally:
            self.args.hub_token = token
        if not self.args.should_save:  # under FSDP every process gets here (the weights were gathered from all)
            return
        folder = Path(output_dir or self.args.output_dir)
        save_run_settings(folder, self.run_settings)
        if self.hidden_projection is not None:
            self.hidden_projection.save(folder)
        readable_like_other_files(folder.glob("*.safetensors"))

    # ---- the Hub: everything goes through hf_distil.hub (safetensors and JSON only, our card) ----

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Publish exactly what `hf_distil.push_to_hub(trainer, ...)` publishes; returns the commit URL.

        The repository is `args.hub_model_id` (or `repo_id=`); the card states `card=` (a `hub.CardReport`: e.g.
        `card_report()` with what a run measured added), by default `card_report()`. `blocking` is accepted for
        Trainer's signature and the upload always completes before returning.
        """
        repo_id = kwargs.pop("repo_id", None) or self.args.hub_model_id
        if not repo_id:
            raise UsageError(
                "push_to_hub needs a repository: set hub_model_id in the arguments, e.g. you/distil-mini."
            )
        for callback in self.callback_handler.callbacks:  # checkpoint pushes first, in order
            if isinstance(callback, hub.PushToHubCallback):
                callback.wait()
        private = self.args.hub_private_repo if private is None else private
        return hub.push_to_hub(
            self,
            repo_id,
            card=kwargs.pop("card", None),
            private=bool(private),
            token=token or self.args.hub_token,
            revision=revision or self.args.hub_revision,
            commit_message=commit_message,
        )

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Only check and record the repository: the first push creates it (no network at construction)."""
        if not self.args.hub_model_id:
            raise UsageError("push_to_hub=True needs hub_model_id, e.g. --hub_model_id your-name/distilbert-mini.")
        self.hub_model_id = self.args.hub_model_id

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Trainer's own checkpoint push uploads training_args.bin (a pickle); the PushToHubCallback added in
        __init__ pushes each checkpoint instead (safetensors and JSON only)."""

    def card_report(self) -> hub.CardReport:
        """What the model card states that this trainer knows: the teacher, the student, the loss, the arguments
        and the log history. A run adds what it measured (held-out results, speed) with `dataclasses.replace`."""
        student = self.accelerator.unwrap_model(self.model)
        return training_card_report(student, self.teacher, self.teacher_name, self.args, self.state)

    def create_model_card(self, model_name: str | None = None, **kwargs: Any) -> None:
        """hf_distil's card in place of Trainer's: `card_report()` as README.md in output_dir, beside its loss plot."""
        if self.is_world_process_zero():
            hub.save_model_card(self.card_report(), self.args.output_dir, model_name or self.args.hub_model_id)

    # ---- data: keep the columns the teacher needs, even if the student does not take them ----

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        self._signature_columns += [c for c in CACHE_COLUMNS if c not in self._signature_columns]
        if isinstance(self.data_collator, SentenceCollator):  # it tokenises the raw sentences itself
            self._signature_columns += [c for c in SENTENCE_COLUMNS if c not in self._signature_columns]
        if self.teacher is not None:
            extra = heads.forward_arguments(self.accelerator.unwrap_model(self.teacher)) - set(self._signature_columns)
            self._signature_columns += sorted(extra)

    def _selected_rows(self, labels: torch.Tensor | None, attention_mask: torch.Tensor) -> torch.Tensor | None:
        """Rows where the logit terms are computed: masked ones, or every real token; None without labels (sentence
        batches: no LM head runs)."""
        if labels is None or not any(self.weights[t] > 0 for t in HEAD_TERMS):
            return None
        if self.args.restrict_ce_to_mask or (self.weights["ce"] == 0 and self.weights["mse"] == 0):
            return labels.ne(IGNORE_INDEX)
        return attention_mask.bool()

    count_names = COUNTS

    def _counts_of(self, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor | None:
        """Masked (labelled) tokens, real tokens, rows of the logit terms, real (query, key) pairs, sequences and
        (query, positive, negative) triplets of one micro-batch (see losses.terms.COUNTS). Sentence batches have no
        labels: no masked tokens, no rows."""
        ids = batch.get("labels", batch.get("input_ids"))
        if ids is None:
            return None
        mask = batch.get("attention_mask", torch.ones_like(ids)).to(device)
        labels = batch["labels"].to(device) if "labels" in batch else None
        zero = torch.zeros((), dtype=torch.long, device=device)
        target = labels[:, 1:] if labels is not None and self.weights["clm"] > 0 else labels
        rows = self._selected_rows(labels, mask)
        sequences = torch.tensor(len(ids), device=device)
        return torch.stack(
            [
                zero if target is None else target.ne(IGNORE_INDEX).sum(),
                mask.sum(),
                zero if rows is None else rows.sum(),
                mask.sum(1).pow(2).sum(),
                sequences,
                sequences // 3 if "margin_mse" in self._active else zero,
            ]
        )

    # ---- the loss ----

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Student forward, teacher signals, one call into the loss; terms logged per step."""
        cached = {k: inputs.pop(k) for k in CACHE_COLUMNS if k in inputs}
        similarity: SimilarityShare | None = inputs.pop(SIMILARITY_KEY, None)
        teacher_inputs = split_teacher_inputs(inputs)
        labels = inputs.get("labels")
        mask = inputs.setdefault("attention_mask", torch.ones_like(inputs["input_ids"]))
        rows = self._selected_rows(labels, mask)
        reads = self._reads(model, logits=rows is not None, teacher_embeddings=similarity is None)
        # Replaying the random state of the update's first pass (get_batch_samples) draws the dropout that the
        # similarity KL's cached gradient was taken at.
        with similarity.random_state.replayed() if similarity is not None else contextlib.nullcontext():
            student = heads.hidden_and_row_logits(model, inputs, rows, **reads.student)
        teacher = self.teachers.signals(teacher_inputs, rows, cache=cached, **reads.teacher)
        with torch.autocast(device_type=mask.device.type, enabled=False):  # the loss maths in fp32
            total, terms = distillation_loss(
                **self._loss_inputs(student, teacher, labels, rows, reads.causal),
                attention_mask=mask,
                weights=self.weights,
                temperature=self.temperature,
                num_items=num_items_in_batch,
                pooled=self._pooled_inputs(
                    student.hidden, mask, teacher, teacher_inputs["attention_mask"], similarity
                ),
            )
        if num_items_in_batch is not None:
            total, terms = self._global_shares(total, terms)
        self._accumulate_terms("train" if model.training else "eval", terms)
        return (total, {"terms": terms}) if return_outputs else total

    def _reads(self, model: nn.Module, logits: bool = True, teacher_embeddings: bool = True) -> _Reads:
        """What the active terms read this step (schedules may switch terms on or off): `logits`, the student's LM
        head at the selected rows; `teacher_embeddings`, the teacher's states for its pooled embeddings (not when
        the update's first pass cached them)."""
        weights = self.weights
        attention, scores = weights["attention_mse"] > 0, self.args.attention_maps == "scores"
        pairs = self._attention_pairs if attention and scores else []
        relation = self.relation if weights["relation"] > 0 else None
        causal = weights["clm"] > 0
        # The encoder, then the LM head at the selected rows only; a wrapped student (DDP, DeepSpeed) must run its own
        # forward for its gradient hooks, and a causal loss reads every position: full logits then. Without logits,
        # the encoder alone.
        split = model is self.model and (
            not causal and heads.can_split(self.model) if logits else heads.can_encode_alone(self.model)
        )
        pooled = any(weights[t] > 0 for t in POOLED_TERMS)
        shared = {
            "states": weights["hidden_mse"] > 0 or weights["pkd"] > 0,
            "maps": attention and not scores,
            "defer_projection": split and self.projection_in_loss and weights["mse"] == 0,  # L_mse reads whole logits
        }
        student = {
            "split": split,
            "score_layers": [i for i, _ in pairs] or None,
            "qkv_layer": relation.student_layer if relation else None,
        }
        teacher = {
            "logits": any(weights[t] > 0 for t in LOGIT_TERMS),
            "hidden": weights["cos"] > 0 or (pooled and teacher_embeddings),
            "score_layers": [j for _, j in pairs] or None,
            "qkv_layer": relation.teacher_layer if relation else None,
        }
        return _Reads({**student, **shared}, {**teacher, **shared}, causal)

    def _loss_inputs(
        self, student: heads.LMOutputs, teacher: TeacherSignals, labels: torch.Tensor, rows: torch.Tensor, causal: bool
    ) -> dict[str, Any]:
        """Both sides' outputs as the arguments of `distillation_loss`."""
        layers = None
        if self.layer_pairs:
            layers = {
                "layer_pairs": self.layer_pairs,
                "projection": self.hidden_projection,
                "student_states": student.hidden_states,
                "teacher_states": teacher.states,
                "student_attention": student.attention_by_layer,
                "teacher_attention": teacher.attention,
            }
        relation = None
        if student.qkv is not None:
            relation = {"student_qkv": student.qkv, "teacher_qkv": teacher.qkv, "heads": self.relation.heads}
        return {
            "student_logits": student.row_logits,
            "teacher_logits": teacher.row_logits,
            "teacher_topk": teacher.topk,
            "teacher_weights": self.teachers.weights,
            "labels": labels[rows] if rows is not None else None,
            "causal_logits": student.full_logits if causal else None,
            "causal_labels": labels if causal else None,
            "student_hidden": student.hidden,
            "teacher_hidden": teacher.hidden,
            "layers": layers,
            "relation": relation,
        }

    def _pooled_inputs(
        self,
        student_hidden: torch.Tensor,
        mask: torch.Tensor,
        teacher: TeacherSignals,
        teacher_mask: torch.Tensor,
        similarity: SimilarityShare | None,
    ) -> dict[str, Any] | None:
        """Both sides' sentence embeddings as the `pooled` argument of `distillation_loss`; None when no pooled
        term is on. With the update's cached similarity KL, the teacher's embeddings come from it too."""
        weights = self.weights
        if not any(weights[t] > 0 for t in POOLED_TERMS):
            return None
        embeddings = self.pooling(student_hidden, mask)
        kl = None
        if similarity is not None and weights["similarity_kl"] > 0:
            kl = cached_term(embeddings, similarity.gradient, similarity.share)
        return {
            "student": embeddings,
            "teacher": similarity.teacher if similarity is not None else self.pooling(teacher.hidden, teacher_mask),
            "temperature": self.args.similarity_temperature,
            "projection": self.hidden_projection,
            "similarity": kl,
        }

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor, None, None]:
        """Evaluation gives the loss and its terms; full-vocabulary logits are never gathered."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs, num_items_in_batch=self._term_counts([inputs], self.args.device))
        self._eval_batches += 1
        return loss.detach(), None, None


def _active_terms(args: DistillationArguments) -> set[str]:
    """The terms whose weight is > 0 at some point of the run: their own value, or a schedule's start or end."""
    scheduled = check_schedules(args.loss_schedules)
    return {
        term.name
        for term in LOSS_TERMS
        if getattr(args, term.weight_field) > 0
        or (
            term.weight_field in scheduled
            and max(scheduled[term.weight_field].start, scheduled[term.weight_field].end) > 0
        )
    }


def _reads_its_own_tokens(
    teacher_tokenizer: PreTrainedTokenizerBase | None, tokenizer: PreTrainedTokenizerBase | None, active: set[str]
) -> bool:
    """Whether the teacher reads the text with its own tokenizer (one that tokenises differently from the
    student's); then only the pooled terms compare the two models, token-level terms are refused in one line."""
    if teacher_tokenizer is None:
        return False
    if tokenizer is None:
        raise UsageError(
            "teacher_processing_class is given but processing_class is not; pass the student's tokenizer too."
        )
    if same_tokenization(teacher_tokenizer, tokenizer):
        return False
    token_level = sorted(f"alpha_{t}" for t in active - set(POOLED_TERMS))
    if token_level:
        raise UsageError(
            f"the teacher's tokenizer and the student's differ, so their tokens do not line up, but "
            f"{', '.join(token_level)} > 0 compare them token by token; set them to 0 and distil through the pooled "
            "terms (alpha_embedding_mse, alpha_embedding_cos, alpha_similarity_kl, alpha_margin_mse)."
        )
    return True


def _check_heads(student: PreTrainedModel, active: set[str]) -> None:
    """Logit and LM terms need the student's LM head; pooled and layer terms need only its encoder."""
    needing = sorted(f"alpha_{t}" for t in active & set(HEAD_TERMS))
    if needing and student.get_output_embeddings() is None:
        raise UsageError(
            f"{', '.join(needing)} > 0 read the student's LM head, but the {type(student).__name__} has none; "
            "set them to 0 (the pooled and layer terms need no head), or pass a ...ForMaskedLM student."
        )


def _teacher_folder(teacher: PreTrainedModel | None, hub: bool = True) -> Path | None:
    """The folder of the teacher's Sentence Transformers settings (which say how it pools): the local folder it was
    loaded from, or with `hub` those of its Hub id (`sentence_transformers_folder`); None without them."""
    source = getattr(getattr(teacher, "config", None), "name_or_path", None)
    if not source or not (hub or Path(source).is_dir()):
        return None
    return sentence_transformers_folder(source)


def _folder_pooling(teacher: PreTrainedModel | None, hub: bool) -> Pooling | None:
    """The pooling of the teacher's Sentence Transformers settings, when it has them."""
    folder = _teacher_folder(teacher, hub)
    return Pooling.from_folder(folder) if folder else None


def _sentence_data(active: set[str], train: Any, evaluation: Any, own_tokenizer: bool) -> bool:
    """Whether the data are raw sentences for the pooled terms (SentenceCollator) rather than masked-LM text;
    what cannot train is refused in one line."""
    datasets = [d for d in (train, evaluation) if d is not None]
    sentences = bool(datasets) and all(is_sentence_dataset(d) for d in datasets)
    if "margin_mse" in active and not all(has_triplets(d) for d in datasets):
        raise UsageError(
            "alpha_margin_mse > 0 reads (query, positive, negative) rows: give datasets with the raw-text columns "
            "query, positive and negative."
        )
    if own_tokenizer and not sentences:
        raise UsageError(
            "the teacher reads the text with its own tokenizer, so the datasets must hold raw text (a 'text' column, "
            "or query/positive/negative) for each model to tokenise; pass them untokenised."
        )
    return sentences and not active & set(HEAD_TERMS)


def _sentence_collator(
    student: PreTrainedModel,
    teacher: PreTrainedModel | None,
    tokenizer: PreTrainedTokenizerBase | None,
    teacher_tokenizer: PreTrainedTokenizerBase | None,
) -> SentenceCollator:
    """Each model's tokenizer, truncating at what the tokenizer, the model's positions and the teacher's Sentence
    Transformers folder (the length its embeddings are used at: 256 for all-MiniLM-L6-v2) allow."""
    if tokenizer is None:
        raise UsageError(
            "the datasets hold raw sentences; pass processing_class=tokenizer so the trainer can tokenise."
        )
    folder = _teacher_folder(teacher)
    used_at = (folder_max_seq_length(folder) if folder else None) or 10**9

    def limit(t: PreTrainedTokenizerBase | None, model: PreTrainedModel | None) -> int | None:
        if t is None:
            return None
        positions = getattr(getattr(model, "config", None), "max_position_embeddings", None) or 10**9
        return min(positions, t.model_max_length, used_at)

    return SentenceCollator(tokenizer, teacher_tokenizer, limit(tokenizer, student), limit(teacher_tokenizer, teacher))


def _without_tied_copies(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """FSDP2 gathers each weight by its name, so a tied one (the MLM decoder and the word embeddings) arrives as
    two tensors, which save_pretrained (it finds ties by shared storage) would write twice. Keep the source."""
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    return {k: v for k, v in state_dict.items() if not (k in tied and tied[k] in state_dict)}
