"""`DistillationTrainer`: Trainer glue around the pure losses (two forwards, one loss, per-term logs)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer
from transformers.trainer_utils import TrainOutput, get_last_checkpoint

from . import heads
from .callbacks import (
    LossScheduleCallback,
    MaskingEpochCallback,
    PushToHubCallback,
    parse_schedules,
)
from .collator import DataCollatorForDistillation, check_vocabulary
from .config import DistillationArguments, loss_weights, parse_teacher_weights
from .cpu_memory import keep_freed_memory
from .data import token_counts, tokenize_and_chunk
from .errors import UsageError
from .layer_map import intermediate_pairs
from .losses import (
    COUNTS,
    IGNORE_INDEX,
    LOGIT_TERMS,
    distillation_loss,
    terms_needing_a_teacher,
)
from .run_folder import check_checkpoint, refuse_source_folders, run_settings, save_run_settings
from .student import PROVENANCE_KEY
from .teacher import Teachers, TeacherSignals, check_compatible, load_teacher
from .teacher_cache import CACHE_COLUMNS


class _Needs(NamedTuple):
    """What this step's active terms read from the forwards."""

    logits: bool  # LM logits at the selected rows (L_ce, L_mse)
    hidden: bool  # last hidden states (L_cos)
    states: bool  # every layer's output (hidden MSE, PKD)
    maps: bool  # attention probabilities (eager attention)
    student_scores: list[int] | None  # layers whose pre-softmax scores are read, student side
    teacher_scores: list[int] | None
    causal: bool  # a causal student: full logits, next-token labels


PROJECTION_FILE = "hidden_projection.safetensors"


class DistillationTrainer(Trainer):
    """Trains `model` (the student) to imitate `teacher_model` with DistilBERT's triple loss.

    Every term of `DistillationArguments` is normalised by the count of its items over the whole
    accumulated and gathered batch, so gradient accumulation and data parallelism give the gradients of
    one large batch (GA=2 × b equals GA=1 × 2b). `teacher_model=None` trains with L_mlm / L_clm alone
    (the baseline that distillation must beat).
    """

    loss_is_scaled_for_ga = True  # each term is divided by its count over the accumulated batch
    _tag_names = ["distillation", "distilbert", "hf_distil"]

    def __init__(
        self,
        model: PreTrainedModel,
        teacher_model: PreTrainedModel | str | list[PreTrainedModel | str] | None = None,
        args: DistillationArguments | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, DistillationArguments):
            raise TypeError(
                f"args must be DistillationArguments, got {type(args).__name__}; build it like TrainingArguments."
            )
        weights = loss_weights(args)
        listed = teacher_model if isinstance(teacher_model, (list, tuple)) else [teacher_model]
        teachers = [load_teacher(t, flag="teacher_model") if isinstance(t, str) else t for t in listed]
        teacher, others = teachers[0], [t for t in teachers[1:] if t is not None]
        present = [t for t in teachers if t is not None]
        refuse_source_folders(args.output_dir, [("the teacher", t.name_or_path) for t in present])
        # What a checkpoint must share with a run that resumes it (saved beside every model; see run_folder.py).
        # Recipes add what the trainer cannot see, e.g. which teacher layers the student was cut from.
        self.run_settings = run_settings(args, present, model, kwargs.get("train_dataset"))
        self.teacher_weights = parse_teacher_weights(args.teacher_weights) or [1.0] * len(teachers)
        if len(self.teacher_weights) != len(teachers):  # values are checked with the arguments
            raise UsageError(
                f"teacher_weights {args.teacher_weights!r} must hold {len(teachers)} non-negative weights, not all 0."
            )
        for other in others:
            check_compatible(model, other, needs_hidden=False)
        tokenizers = (kwargs.get("processing_class"), getattr(kwargs.get("data_collator"), "tokenizer", None))
        for tokenizer in {id(t): t for t in tokenizers if isinstance(t, PreTrainedTokenizerBase)}.values():
            check_vocabulary(tokenizer, model)  # the teacher's vocabulary equals the student's (check_compatible)
        cached = set(CACHE_COLUMNS) <= set(getattr(kwargs.get("train_dataset"), "column_names", None) or [])
        needs_teacher = terms_needing_a_teacher(weights, cached_soft_targets=cached)
        if teacher is None and needs_teacher:
            raise UsageError(
                f"{', '.join(needs_teacher)} > 0 but no teacher_model was given; pass one or set them to 0."
            )
        self.layer_pairs: list[tuple[int, int]] = []
        self.hidden_projection: nn.Linear | None = None
        if teacher is not None:
            check_compatible(model, teacher, needs_hidden=args.alpha_cos > 0)
            self._prepare_intermediate(model, teacher, args, weights)
        self.teacher_name = teacher.config.name_or_path if teacher is not None else None
        _meet_raw_text(model, args, kwargs)
        if args.push_to_hub:  # checkpoints go up through our callback: Trainer's own push uploads pickles
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), _checkpoint_pusher(args)]
        super().__init__(model=model, args=args, **kwargs)
        if args.cpu_keep_freed_memory and self.args.device.type == "cpu":
            keep_freed_memory()
        if hasattr(self.data_collator, "set_epoch"):
            self.add_callback(MaskingEpochCallback(self.data_collator))
        self.schedule = LossScheduleCallback(parse_schedules(args.loss_schedules)) if args.loss_schedules else None
        if self.schedule is not None:
            self.add_callback(self.schedule)
        self._projection_averaged_at = -1
        if self.hidden_projection is not None:
            self._place_projection()
        self.teachers = Teachers(
            [t for t in (teacher, *others) if t is not None], self.teacher_weights, self.accelerator
        )
        self._term_sums: dict[str, dict[str, torch.Tensor]] = {"train": {}, "eval": {}}
        self._eval_batches = 0
        self._terms_since_step = 0  # global step when the logged window began (not 0 after a resume)
        self._logged_nonfinite_loss = False

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

    def _prepare_intermediate(
        self,
        student: PreTrainedModel,
        teacher: PreTrainedModel,
        args: DistillationArguments,
        weights: dict[str, float],
    ) -> None:
        """Layer pairs, eager attention (SDPA returns no attention maps) and a width projection if needed."""
        if not any(weights[t] > 0 for t in ("hidden_mse", "attention_mse", "pkd")):
            return
        s_layers = getattr(student.config, "n_layers", None) or student.config.num_hidden_layers
        source = (getattr(student.config, PROVENANCE_KEY, None) or {}).get("teacher_layers")
        self.layer_pairs = intermediate_pairs(
            s_layers, teacher.config.num_hidden_layers, args.intermediate_layers, source
        )
        if weights["attention_mse"] > 0:
            s_heads = getattr(student.config, "n_heads", None) or student.config.num_attention_heads
            if s_heads != teacher.config.num_attention_heads:
                raise UsageError(
                    f"alpha_attention_mse compares attention maps head by head, but the student has {s_heads} heads "
                    f"and the teacher {teacher.config.num_attention_heads}."
                )
            if args.attention_maps == "probabilities":
                student.set_attn_implementation("eager")
                teacher.set_attn_implementation("eager")
            elif not (heads.has_attention_scores(student) and heads.has_attention_scores(teacher)):
                raise UsageError(
                    "attention_maps='scores' knows BERT, RoBERTa and DistilBERT layers only; "
                    "use attention_maps='probabilities'."
                )
        if student.config.hidden_size != teacher.config.hidden_size:
            # Trained with the student and saved beside it (PROJECTION_FILE), never inside its weights.
            self.hidden_projection = nn.Linear(student.config.hidden_size, teacher.config.hidden_size)

    def _place_projection(self) -> None:
        """On the student's device, and the same on every process (DDP broadcasts only the model's weights)."""
        if self.is_deepspeed_enabled:
            raise UsageError(
                "a learned hidden-size projection is not supported under DeepSpeed yet; "
                "use DDP or a student of the teacher's width."
            )
        self.hidden_projection.to(self.args.device)
        if self.accelerator.num_processes > 1:
            for tensor in self.hidden_projection.parameters():
                torch.distributed.broadcast(tensor.data, src=0)

    def _average_projection_grads(self, *_: Any) -> None:
        """The projection lives outside the DDP-wrapped student, so its gradients are averaged here, once per
        update (before clipping, or at the optimizer's pre-step hook), as DDP averages the student's."""
        if self.accelerator.num_processes == 1 or self._projection_averaged_at == self.state.global_step:
            return
        self._projection_averaged_at = self.state.global_step
        for p in self.hidden_projection.parameters():
            if p.grad is None:  # a rank without this term's gradient still takes part in the mean
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad /= self.accelerator.num_processes

    def _clip_grad_norm(self, model: nn.Module) -> torch.Tensor:
        """Clip the student and the projection together: one norm over everything the optimizer updates."""
        if self.hidden_projection is None:
            return super()._clip_grad_norm(model)
        self._average_projection_grads()
        return self.accelerator.clip_grad_norm_(
            [*model.parameters(), *self.hidden_projection.parameters()], self.args.max_grad_norm
        )

    @property
    def _attention_pairs(self) -> list[tuple[int, int]]:
        """Layer pairs without the embeddings (0), which have no attention."""
        return [(i, j) for i, j in self.layer_pairs if i > 0 and j > 0]

    def create_optimizer(self, *args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(*args, **kwargs)
        if self.hidden_projection is not None and not any(
            p is q
            for group in optimizer.param_groups
            for p in group["params"]
            for q in self.hidden_projection.parameters()
        ):
            optimizer.add_param_group({"params": list(self.hidden_projection.parameters()), "weight_decay": 0.0})
            optimizer.register_step_pre_hook(self._average_projection_grads)
        return optimizer

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> TrainOutput:
        """Trainer.train, once the checkpoint to resume from is known intact and made with these settings."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True and Path(self.args.output_dir).is_dir():
            checkpoint = get_last_checkpoint(self.args.output_dir)
        if checkpoint and checkpoint is not True:
            check_checkpoint(checkpoint, self.run_settings)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Trainer's save, plus: the run's settings (run_folder.py) and the width projection beside the student;
        no Hub token inside training_args.bin (a pickle of the arguments in every checkpoint); safetensors files
        readable like the others (safetensors writes them 0600 whatever the umask)."""
        token, self.args.hub_token = self.args.hub_token, None
        try:
            super()._save(output_dir, state_dict)
        finally:
            self.args.hub_token = token
        folder = Path(output_dir or self.args.output_dir)
        save_run_settings(folder, self.run_settings)
        if self.hidden_projection is not None:
            from safetensors.torch import save_file

            projection = {k: v.detach().cpu().contiguous() for k, v in self.hidden_projection.state_dict().items()}
            save_file(projection, str(folder / PROJECTION_FILE))
        _readable_like_other_files(folder.glob("*.safetensors"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = Path(resume_from_checkpoint) / PROJECTION_FILE
        if self.hidden_projection is not None and path.exists():
            from safetensors.torch import load_file

            self.hidden_projection.load_state_dict(load_file(str(path), device=str(self.args.device)))

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

        The repository is `args.hub_model_id` (or `repo_id=`); `blocking` is accepted for Trainer's signature
        and the upload always completes before returning.
        """
        from .hub import push_to_hub

        repo_id = kwargs.pop("repo_id", None) or self.args.hub_model_id
        if not repo_id:
            raise UsageError(
                "push_to_hub needs a repository: set hub_model_id in the arguments, e.g. you/distil-mini."
            )
        for callback in self.callback_handler.callbacks:  # checkpoint pushes first, in order
            if isinstance(callback, PushToHubCallback):
                callback.wait()
        private = self.args.hub_private_repo if private is None else private
        return push_to_hub(
            self,
            repo_id,
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

    def create_model_card(self, **kwargs: Any) -> None:
        """hf_distil's card (teacher, layer map, loss terms, held-out results) in place of Trainer's."""
        from .hub import render_model_card

        if self.is_world_process_zero():
            card = render_model_card(
                self.args.output_dir,
                repo_id=kwargs.get("model_name") or self.args.hub_model_id,
                teacher=self.teacher_name,
                world_size=self.args.world_size,
            )
            card.save(Path(self.args.output_dir, "README.md"))

    # ---- data: keep the columns the teacher needs, even if the student does not take them ----

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        self._signature_columns += [c for c in CACHE_COLUMNS if c not in self._signature_columns]
        if self.teacher is not None:
            extra = heads.forward_arguments(self.accelerator.unwrap_model(self.teacher)) - set(self._signature_columns)
            self._signature_columns += sorted(extra)

    def _selected_rows(self, labels: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Rows where the logit terms are computed: masked ones, or every real token."""
        if self.args.restrict_ce_to_mask or (self.weights["ce"] == 0 and self.weights["mse"] == 0):
            return labels.ne(IGNORE_INDEX)
        return attention_mask.bool()

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: torch.device) -> tuple[list, Any]:
        """Trainer's micro-batches of one update, with our denominators in place of its single token count.

        The counts travel as Trainer's `num_items_in_batch`, which it hands unchanged to `compute_loss` (ours):
        a dict {count name: tensor}, one per kind of item the terms average over.
        """
        batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        return batch_samples, self._term_counts(batch_samples, device)

    def _term_counts(self, batch_samples: list, device: torch.device) -> dict[str, torch.Tensor] | None:
        """Denominators of every term over the accumulated batch (and all processes), see losses.py."""
        if not batch_samples or "labels" not in batch_samples[0]:
            return None
        counts = torch.zeros(len(COUNTS), dtype=torch.long, device=device)
        for batch in batch_samples:
            labels = batch["labels"].to(device)
            mask = batch.get("attention_mask", torch.ones_like(labels)).to(device)
            target = labels[:, 1:] if self.weights["clm"] > 0 else labels
            lengths = mask.sum(1)
            counts += torch.stack(
                [
                    target.ne(IGNORE_INDEX).sum(),
                    mask.sum(),
                    self._selected_rows(labels, mask).sum(),
                    lengths.pow(2).sum(),
                    torch.tensor(len(labels), device=device),
                ]
            )
        if self._gathers_counts:
            counts = self.accelerator.gather(counts.unsqueeze(0)).sum(0)
        return dict(zip(COUNTS, counts))

    @property
    def _gathers_counts(self) -> bool:
        return self.args.average_tokens_across_devices and self.args.world_size > 1

    # ---- the loss ----

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Student forward, teacher signals, one call into losses.py; terms logged per step."""
        cache = {k: inputs.pop(k) for k in CACHE_COLUMNS if k in inputs}
        labels = inputs["labels"]
        mask = inputs.setdefault("attention_mask", torch.ones_like(labels))
        rows = self._selected_rows(labels, mask)
        needs = self._needs()
        student = heads.hidden_and_row_logits(
            model, inputs, rows, self._splits(model, needs.causal), needs.states, needs.maps, needs.student_scores
        )
        teacher = self.teachers.signals(
            inputs,
            rows,
            logits=needs.logits,
            hidden=needs.hidden,
            states=needs.states,
            maps=needs.maps,
            score_layers=needs.teacher_scores,
            temperature=self.temperature,
            cache=cache,
        )
        with torch.autocast(device_type=labels.device.type, enabled=False):  # the loss maths in fp32
            total, terms = distillation_loss(
                student_logits=student.row_logits,
                teacher_logits=teacher.row_logits,
                teacher_topk=teacher.topk,
                labels=labels[rows],
                causal_logits=student.full_logits if needs.causal else None,
                causal_labels=labels if needs.causal else None,
                student_hidden=student.hidden,
                teacher_hidden=teacher.hidden,
                attention_mask=mask,
                weights=self.weights,
                temperature=self.temperature,
                num_items=num_items_in_batch,
                layers=self._layer_inputs(student, teacher),
            )
        if num_items_in_batch is not None and self._gathers_counts:
            # Terms are shares of the global batch; DDP averages gradients over processes, so undo that mean.
            total = total * self.accelerator.num_processes
            terms = {k: v * self.accelerator.num_processes for k, v in terms.items()}
        self._accumulate_terms("train" if model.training else "eval", terms)
        return (total, {"terms": terms}) if return_outputs else total

    def _needs(self) -> _Needs:
        """What the active terms read this step (schedules may switch terms on or off)."""
        weights = self.weights
        attention, scores = weights["attention_mse"] > 0, self.args.attention_maps == "scores"
        pairs = self._attention_pairs if attention and scores else []
        return _Needs(
            logits=any(weights[t] > 0 for t in LOGIT_TERMS),
            hidden=weights["cos"] > 0,
            states=weights["hidden_mse"] > 0 or weights["pkd"] > 0,
            maps=attention and not scores,
            student_scores=[i for i, _ in pairs] or None,
            teacher_scores=[j for _, j in pairs] or None,
            causal=weights["clm"] > 0,
        )

    def _splits(self, model: nn.Module, causal: bool) -> bool:
        """Encoder + LM head at the selected rows only; a wrapped student (DDP, DeepSpeed) must run its own
        forward for its gradient hooks, and a causal loss reads every position: full logits then."""
        return model is self.model and not causal and heads.can_split(self.model)

    def _layer_inputs(self, student: heads.LMOutputs, teacher: TeacherSignals) -> dict[str, Any] | None:
        """The intermediate-layer part of the loss (losses.layer_terms), when layer terms are on."""
        if not self.layer_pairs:
            return None
        return {
            "layer_pairs": self.layer_pairs,
            "projection": self.hidden_projection,
            "student_states": student.hidden_states,
            "teacher_states": teacher.states,
            "student_attention": student.attention_by_layer,
            "teacher_attention": teacher.attention,
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

    # ---- logging: per-term values averaged like Trainer's own loss ----

    def _accumulate_terms(self, mode: str, terms: dict[str, torch.Tensor]) -> None:
        sums = self._term_sums[mode]
        if mode == "train" and not sums:
            self._terms_since_step = self.state.global_step
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.detach().float()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_sums["train"]:
            steps = max(self.state.global_step - self._terms_since_step, 1)
            terms = self._flush("train", steps, prefix="loss_")
            logs.update(terms)
            if not all(math.isfinite(v) for v in terms.values()):
                # Trainer's logging_nan_inf_filter put the mean of earlier losses (0 at first) in place of the
                # non-finite ones; the terms tell the truth, so does the loss.
                logs["loss"], self._logged_nonfinite_loss = math.nan, True
            for callback in self.callback_handler.callbacks:
                logs.update(getattr(callback, "current_values", dict)())
        elif "train_loss" in logs and self._logged_nonfinite_loss:
            logs["train_loss"] = math.nan  # the filtered mean would hide that some steps were not finite
        elif any(k.startswith("eval_") for k in logs) and self._term_sums["eval"]:
            logs.update(self._flush("eval", max(self._eval_batches, 1), prefix="eval_loss_"))
            self._eval_batches = 0
        super().log(logs, start_time)

    def _flush(self, mode: str, count: int, prefix: str) -> dict[str, float]:
        names = sorted(self._term_sums[mode])
        values = torch.stack([torch.as_tensor(self._term_sums[mode][n], device=self.args.device) for n in names])
        values = self.accelerator.reduce(values, reduction="mean") / count
        self._term_sums[mode] = {}
        return {f"{prefix}{n}": v for n, v in zip(names, values.tolist())}


def _meet_raw_text(model: PreTrainedModel, args: DistillationArguments, kwargs: dict[str, Any]) -> None:
    """Datasets with a "text" column are tokenised and chunked by the library's pipeline (as TRL's trainers
    accept raw text), and a missing collator becomes DistilBERT's masking collator with the corpus' counts."""
    tokenizer = kwargs.get("processing_class")
    max_length = min(model.config.max_position_embeddings, getattr(tokenizer, "model_max_length", 10**9))
    for key in ("train_dataset", "eval_dataset"):
        dataset = kwargs.get(key)
        columns = getattr(dataset, "column_names", None)
        if columns is None or "input_ids" in columns or set(CACHE_COLUMNS) <= set(columns):
            continue
        if "text" not in columns:
            raise UsageError(f"{key} has columns {columns}; give it a 'text' column or tokenised 'input_ids'.")
        if tokenizer is None:
            raise UsageError(f"{key} holds raw text; pass processing_class=tokenizer so the trainer can tokenise it.")
        kwargs[key] = tokenize_and_chunk(dataset, tokenizer, max_length=max_length)
    if kwargs.get("data_collator") is None and (kwargs.get("train_dataset") or kwargs.get("eval_dataset")) is not None:
        if tokenizer is None:
            raise UsageError(
                "pass data_collator=DataCollatorForDistillation(tokenizer, ...) or processing_class=tokenizer."
            )
        train = kwargs.get("train_dataset")
        counts = token_counts(train, tokenizer) if train is not None else None
        kwargs["data_collator"] = DataCollatorForDistillation.from_arguments(tokenizer, args, token_counts=counts)


def _checkpoint_pusher(args: DistillationArguments) -> PushToHubCallback:
    if not args.hub_model_id:
        raise UsageError("push_to_hub=True needs hub_model_id, e.g. --hub_model_id your-name/distilbert-mini.")
    return PushToHubCallback(
        args.hub_model_id, private=bool(args.hub_private_repo), token=args.hub_token, revision=args.hub_revision
    )


def _readable_like_other_files(paths: Any) -> None:
    """Give files the mode that the process' umask gives any new file (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in paths:
        os.chmod(path, 0o666 & ~umask)
