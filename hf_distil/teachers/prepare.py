"""The teacher, prepared in one place: loaded, frozen, placed beside the student, run without grad."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from accelerate import Accelerator
from huggingface_hub import constants, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from torch import nn
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

from ..config import TEACHER_DTYPES, check_teacher_weights
from ..errors import UsageError
from ..losses import LinearLogits, terms_needing_a_teacher
from ..losses.terms import LOGIT_TERMS
from ..models import heads
from ..models.vocabulary import match_teacher_vocabulary
from .cache import CACHE_COLUMNS

logger = logging.get_logger(__name__)

# Any of these beside a model means its tokenizer was saved (fast, WordPiece, BPE, SentencePiece).
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "tokenizer.model",
)


def load_teacher(
    name_or_path: str, flag: str = "--teacher", auto_class: type = AutoModelForMaskedLM, **from_pretrained_kwargs: Any
) -> PreTrainedModel:
    """A Hub id (e.g. "bert-base-uncased") or a local folder holding a checkpoint trained for what it teaches.

    transformers only logs the weights a checkpoint lacks and starts them random: a bare `BertModel` loads as
    a masked LM with a random head, and a distillation from it runs to the end teaching noise. Refused here,
    in one line, as are NaN/Inf weights. `flag` names the option in messages; `auto_class` is the head
    (masked LM, or a task's).
    """
    check_model_source(name_or_path, flag)
    try:
        teacher, info = auto_class.from_pretrained(name_or_path, output_loading_info=True, **from_pretrained_kwargs)
    except OSError as error:  # e.g. the network went away mid-download: one line, not a traceback
        raise UsageError(f"{flag} {name_or_path}: {' '.join(str(error).split())}") from None
    untrained = sorted(info["missing_keys"]) + sorted(str(k[0]) for k in info["mismatched_keys"])
    if untrained:
        shown = ", ".join(untrained[:3]) + (", ..." if len(untrained) > 3 else "")
        needed = (
            "a masked-LM checkpoint (saved from ...ForMaskedLM, not a bare BertModel), or train a masked-LM head "
            "on it first"
            if auto_class is AutoModelForMaskedLM
            else f"a teacher already fine-tuned for this task ({auto_class.__name__})"
        )
        raise UsageError(
            f"{flag} {name_or_path}: {len(untrained)} weights are not in the checkpoint and would start random "
            f"({shown}); pass {needed}."
        )
    broken = [name for name, p in teacher.named_parameters() if not torch.isfinite(p).all()]
    if broken:  # every loss would be NaN from the first step, and a student cut from it inherits them
        raise UsageError(
            f"{flag} {name_or_path}: NaN/Inf in {len(broken)} weight tensor(s) ({', '.join(broken[:3])}); "
            "the checkpoint is damaged or diverged: pass another teacher."
        )
    return teacher


def load_tokenizer(name_or_path: str, flag: str = "--teacher") -> PreTrainedTokenizerBase:
    """The tokenizer saved with a model. A local folder without one is refused: transformers 5 then builds a
    tokenizer of special tokens only, which turns every word into [UNK]."""
    check_model_source(name_or_path, flag)
    folder = Path(name_or_path).expanduser()
    if folder.is_dir() and not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise UsageError(
            f"{flag} {name_or_path}: the folder holds no tokenizer ({', '.join(_TOKENIZER_FILES[:3])}, ...); "
            "save it beside the model with tokenizer.save_pretrained(folder)."
        )
    return AutoTokenizer.from_pretrained(name_or_path)


def check_model_source(name_or_path: str, flag: str) -> None:
    """Say in one line why a model cannot be loaded, before transformers says it in a traceback
    ("Repo id must be in the form ..." for a folder that does not exist)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(
                f"{flag} {name_or_path}: the folder holds no config.json; pass a folder written by save_pretrained."
            )
        return
    if path.exists():
        raise UsageError(f"{flag} {name_or_path}: a file, not a model folder; pass the folder that holds config.json.")
    try:
        validate_repo_id(name_or_path)
    except HFValidationError:
        raise UsageError(f"{flag} {name_or_path}: no such folder; pass an existing folder or a Hub id.") from None
    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
        raise UsageError(
            f"{flag} {name_or_path}: no such folder, and the Hugging Face Hub cannot be reached (offline: "
            "HF_HUB_OFFLINE=1) while the local cache lacks it; pass a local folder, or run once online to cache it."
        )


def check_compatible(
    student: PreTrainedModel, teacher: PreTrainedModel, needs_hidden: bool, same_vocabulary: bool = True
) -> None:
    """Fail at construction, in one line, when the teacher cannot teach this student (`same_vocabulary`: both read
    the student's token ids)."""
    s_vocab, t_vocab = student.config.vocab_size, teacher.config.vocab_size
    if same_vocabulary and s_vocab != t_vocab:
        raise UsageError(
            f"teacher vocab {t_vocab} ≠ student vocab {s_vocab}; build the student with "
            "init_student_from_teacher(teacher) or pick a teacher with the same tokenizer."
        )
    s_hidden, t_hidden = student.config.hidden_size, teacher.config.hidden_size
    if needs_hidden and s_hidden != t_hidden:
        raise UsageError(
            f"alpha_cos > 0 compares hidden states, but teacher hidden size {t_hidden} ≠ student {s_hidden}; "
            "set alpha_cos=0 or use a student of the teacher's width."
        )


def prepare_teacher(teacher: PreTrainedModel, accelerator: Accelerator, dtype: str | None = None) -> PreTrainedModel:
    """Freeze the teacher, cast it to `dtype` (a name of config.TEACHER_DTYPES; None keeps its own) and place it on
    the student's device.

    `eval()` switches off dropout in every BERT-family layer (attention-probability dropout included, as
    transformers passes dropout=0.0 to SDPA outside training); `requires_grad_(False)` keeps it out of
    autograd, and it never reaches the optimizer, which Trainer builds from the student alone.
    """
    teacher.eval()
    teacher.requires_grad_(False)
    if dtype is not None:
        teacher.to(TEACHER_DTYPES[dtype])
    if accelerator.state.deepspeed_plugin is not None:
        return _deepspeed_inference_engine(teacher, accelerator.state.deepspeed_plugin.deepspeed_config)
    if accelerator.is_fsdp2:
        return _fsdp2_sharded_teacher(teacher, accelerator)
    return accelerator.prepare_model(teacher, evaluation_mode=True)


def _deepspeed_inference_engine(teacher: PreTrainedModel, training_config: dict) -> Any:
    """Under ZeRO-3 the teacher is sharded like the student (never whole on every rank); under ZeRO-0/1/2
    each rank keeps a full replica (stage 0). No optimizer, no scheduler: it never trains.

    A plain forward of a ZeRO-3-partitioned model fails ("'weight' must be 2-D"); the engine's hooks
    gather each layer's shards for its forward. Same approach as TRL's `prepare_deepspeed`.
    """
    import deepspeed

    config = copy.deepcopy(training_config)
    config.pop("optimizer", None)
    config.pop("scheduler", None)
    zero = config.setdefault("zero_optimization", {})
    if zero.get("stage", 0) == 3:
        hidden = teacher.config.hidden_size
        for key, value in (
            ("reduce_bucket_size", hidden * hidden),
            ("stage3_prefetch_bucket_size", int(0.9 * hidden * hidden)),
            ("stage3_param_persistence_threshold", 10 * hidden),
        ):
            if zero.get(key) == "auto":
                zero[key] = value
    else:
        config["zero_optimization"] = {"stage": 0}
    engine, *_ = deepspeed.initialize(model=teacher, config=config)
    engine.eval()
    return engine


def _fsdp2_sharded_teacher(teacher: PreTrainedModel, accelerator: Accelerator) -> PreTrainedModel:
    """Under FSDP2 the teacher is sharded like the student (`fully_shard`, in place): each block of its layer
    stacks is one unit, the rest (embeddings, LM head) goes with the top module, and every unit drops its
    gathered weights after its forward. So a process holds its shards plus, during a forward, one block and
    the top module's weights: never the whole teacher. No optimizer, no gradients: it never trains.

    TRL's `prepare_fsdp` shards the top module alone, with the student's `reshard_after_forward`: the whole
    teacher is gathered for every forward, and with False (SHARD_GRAD_OP) it stays whole after the first,
    since only a backward, which a teacher never runs, would reshard it. Accelerate's `fsdp2_prepare_model`
    keeps the head and top units gathered after forward for the same backward; its layer classes come from
    the student's config (or `_no_split_modules`, None for BERT), so the teacher finds its own blocks here.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    plugin = accelerator.state.fsdp_plugin
    mesh = getattr(accelerator, "torch_device_mesh", None)
    options = {
        "mesh": mesh[tuple(accelerator.parallelism_config.fsdp_dim_names)] if mesh is not None else None,
        "reshard_after_forward": True,
        "mp_policy": plugin.mixed_precision_policy or MixedPrecisionPolicy(),  # the student's compute dtype
        "offload_policy": plugin.cpu_offload,
    }
    blocks = [block for stack in teacher.modules() if isinstance(stack, nn.ModuleList) for block in stack]
    for block in reversed(blocks):  # inner units before the ones that hold them
        fully_shard(block, **options)
    fully_shard(teacher, **options)
    return teacher


class TeacherSignals(NamedTuple):
    """What the loss reads from the teacher side for one batch (None where no active term needs it)."""

    hidden: torch.Tensor | None  # (B, L, H) the first teacher's last hidden state
    row_logits: torch.Tensor | LinearLogits | list[torch.Tensor] | None  # (N, V) at the selected rows; several: a list
    topk: tuple[torch.Tensor, torch.Tensor] | None  # cached (ids, values), (N, k), in place of row_logits
    states: tuple[torch.Tensor, ...] | None  # embeddings + every layer of the first teacher
    attention: dict[int, torch.Tensor] | None  # {layer (1-based): maps or pre-softmax scores}
    qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # one layer's Q, K, V (relation term)


class Teachers:
    """The teacher side of the loss, whatever it is: one live model, several whose softened distributions are
    mixed with `weights` for the logit terms (hidden-state and layer terms come from the first), or top-k logits
    cached in the batch (recipes/cache_teacher.py) standing in for L_ce's live teacher.

    Built and checked before Trainer's construction (`build`), prepared once the accelerator exists (`prepare`);
    each model runs under `torch.no_grad()`.
    """

    def __init__(self, models: list[PreTrainedModel], weights: list[float]) -> None:
        self.models = models
        self.weights = weights
        self.accelerator: Accelerator | None = None

    @classmethod
    def build(
        cls,
        given: PreTrainedModel | str | Sequence[PreTrainedModel | str] | None,
        student: PreTrainedModel,
        *,
        weights: Sequence[float] | None,
        loss_weights: dict[str, float],
        cached_soft_targets: bool = False,
        own_tokenizer: bool = False,
    ) -> Teachers:
        """The teachers of a run, checked at construction: names loaded (`load_teacher`; without an LM head when no
        active term reads logits), one weight per teacher (equal by default), each able to teach `student`
        (`check_compatible`; hidden widths only for the first, whose states L_cos reads; vocabularies unless the
        teacher reads the text with its `own_tokenizer`), and a teacher present when a term of `loss_weights`
        needs one."""
        listed = list(given) if isinstance(given, (list, tuple)) else [given]
        auto_class = AutoModelForMaskedLM if any(loss_weights.get(t, 0) > 0 for t in LOGIT_TERMS) else AutoModel
        loaded = [
            load_teacher(t, flag="teacher_model", auto_class=auto_class) if isinstance(t, str) else t for t in listed
        ]
        # A student with a trimmed vocabulary is taught by each teacher's view through its kept ids, unless the
        # teacher reads the text with its own tokenizer, and so its own ids.
        if not own_tokenizer:
            loaded = [t if t is None else match_teacher_vocabulary(t, student) for t in loaded]
        mixture = check_teacher_weights(weights) or [1.0] * len(loaded)
        if len(mixture) != len(loaded) == 1:  # values are checked with the arguments
            raise UsageError(
                f"teacher_weights {weights!r} gives {len(mixture)} weights, but there is one teacher: the weights mix "
                "several teachers' targets; leave teacher_weights out, or pass one teacher per weight."
            )
        if len(mixture) != len(loaded):
            raise UsageError(
                f"teacher_weights {weights!r} gives {len(mixture)} weights for {len(loaded)} teachers; "
                "pass one weight per teacher."
            )
        for other in loaded[1:]:
            if other is not None:
                check_compatible(student, other, needs_hidden=False, same_vocabulary=not own_tokenizer)
        needed = terms_needing_a_teacher(loss_weights, cached_soft_targets=cached_soft_targets)
        if loaded[0] is None and needed:
            raise UsageError(f"{', '.join(needed)} > 0 but no teacher_model was given; pass one or set them to 0.")
        if loaded[0] is not None:
            check_compatible(
                student, loaded[0], needs_hidden=loss_weights["cos"] > 0, same_vocabulary=not own_tokenizer
            )
        return cls([t for t in loaded if t is not None], mixture)

    def prepare(self, accelerator: Accelerator, dtype: str | None = None) -> None:
        """Freeze, cast to `dtype` and place every model beside the student (`prepare_teacher`), once the
        accelerator exists."""
        self.models = [prepare_teacher(model, accelerator, dtype) for model in self.models]
        self.accelerator = accelerator

    def __bool__(self) -> bool:
        return bool(self.models)

    @property
    def first(self) -> Any:
        return self.models[0] if self.models else None

    @property
    def name(self) -> str | None:
        """The first teacher's name or folder (the model card's "distilled from"), None without a teacher."""
        return self.models[0].config.name_or_path if self.models else None

    @torch.no_grad()
    def signals(
        self,
        inputs: dict[str, torch.Tensor],
        rows: torch.Tensor,
        *,
        logits: bool,
        hidden: bool,
        states: bool = False,
        maps: bool = False,
        score_layers: list[int] | None = None,
        qkv_layer: int | None = None,
        cache: dict[str, torch.Tensor] | None = None,
        defer_projection: bool = False,
    ) -> TeacherSignals:
        """Run the teacher(s) for what is asked: `logits` at `rows` (B, L) bool, the last `hidden` state, every
        layer's `states`, attention `maps`, the pre-softmax scores of `score_layers` or `qkv_layer`'s Q, K, V.
        defer_projection: logits as `LinearLogits` for a loss that projects them chunk by chunk (one teacher;
        several give a list of (N, V) logits, which the loss mixes with `weights`)."""
        topk = None
        if cache:
            ids, values = cache[CACHE_COLUMNS[0]], cache[CACHE_COLUMNS[1]]
            if int(rows.sum()) != len(ids):
                raise UsageError(
                    f"the teacher cache holds {len(ids)} rows for this batch but {int(rows.sum())} are selected; "
                    "build the cache with the same restrict_ce_to_mask setting."
                )
            topk = (ids, values)
        live_logits = logits and topk is None
        if not self.models or not (live_logits or hidden or states or maps or score_layers or qkv_layer):
            return TeacherSignals(None, None, topk, None, None)
        defer = defer_projection and len(self.models) == 1
        first = self._run(
            self.first, inputs, rows if live_logits else None, states, maps, score_layers, qkv_layer, defer
        )
        row_logits = first.row_logits if live_logits else None
        if live_logits and len(self.models) > 1:  # the loss mixes them (losses.mix_teacher_logits)
            row_logits = [row_logits, *(self._run(model, inputs, rows).row_logits for model in self.models[1:])]
        return TeacherSignals(first.hidden, row_logits, topk, first.hidden_states, first.attention_by_layer, first.qkv)

    def _run(
        self, model: Any, inputs: dict[str, torch.Tensor], rows: torch.Tensor | None, *options: Any
    ) -> heads.LMOutputs:
        inner = self.accelerator.unwrap_model(model)
        split = heads.can_split(inner) if rows is not None else heads.can_encode_alone(inner)
        return heads.hidden_and_row_logits(model, inputs, rows, split, *options)
