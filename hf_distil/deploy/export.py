"""Export a saved student to ONNX, fp32 and a checked int8, in the folder layout Optimum and transformers.js read.

    OUT/config.json, tokenizer.json, tokenizer_config.json   what both load beside the weights
    OUT/onnx/model.onnx                                      fp32 (transformers.js dtype "fp32")
    OUT/onnx/model_quantized.onnx                            int8 (dtype "q8"), only if it passed the gate
    OUT/export_report.json                                   the gate's figures
    OUT/modules.json, 1_Pooling/, ...                        a Sentence Transformers model's modules, copied

A plain encoder saved as a Sentence Transformers model (a `modules.json` with a Pooling module, or a `pooling`
given) is exported as a sentence embedder: the graph computes `sentence_embedding` (its pooling over the attention
mask, then L2 normalisation when its modules normalise) beside the token states `last_hidden_state`, which
transformers.js' feature-extraction pipeline and sentence-transformers' ONNX backend (Optimum's
ORTModelForFeatureExtraction) read and pool themselves.

The int8 file must earn its place: each quantisation scheme of `SCHEMES` is tried in order (fastest first) and
the first whose answers agree with fp32 on held-out text on at least `min_agreement` of the items is kept:
top-1 at [MASK] for a masked LM, the label for a classifier, the span for question answering, the nearest
neighbour sentence for a plain encoder. A regression head (one output, e.g. STS-B) has no label to agree on: its
int8 predictions must correlate with fp32's at `min_agreement` or more (Pearson), and the report adds their
largest relative error. Answers are compared at batch 1, the deployment setting (a dynamic
int8 scale spans the whole input tensor, so padding in a batch would change what is measured).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from ..errors import RunFailed, UsageError
from ..hub import OnnxExport
from ..models.heads import forward_arguments
from ..models.pooling import Pooling, pool
from .fidelity import (
    Task,
    answers,
    fidelity_feeds,
    format_figure,
    gate_figure,
    held_out_sentences,
    largest_relative_error,
    mean_cosine,
)
from .quantization import SCHEME_NAMES, SCHEMES
from .runtime import describe_machine, latencies, session, torch_runner

logger = hf_logging.get_logger(__name__)

FP32_FILE = "onnx/model.onnx"
INT8_FILE = "onnx/model_quantized.onnx"  # the name transformers.js loads for dtype "q8"
EXPORT_REPORT_FILE = "export_report.json"
OPSET = 17
# fp32 ONNX Runtime against PyTorch, relative to the largest output: an order of magnitude above what the shipped
# teacher's student shows; beyond it the export is broken, not rounded.
FP32_TOLERANCE = 1e-4
# What sentence-transformers needs beside the weights to rebuild its module chain (the modules' own folders, named
# in modules.json, are copied too).
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


TASKS = {  # architecture suffix in config.json -> task
    "ForMaskedLM": Task("fill-mask", AutoModelForMaskedLM, ("logits",), "top-1 agreement at [MASK]"),
    "ForSequenceClassification": Task(
        "text-classification", AutoModelForSequenceClassification, ("logits",), "label agreement"
    ),
    "ForQuestionAnswering": Task(
        "question-answering", AutoModelForQuestionAnswering, ("start_logits", "end_logits"), "answer span agreement"
    ),
    "Model": Task("feature-extraction", AutoModel, ("last_hidden_state",), "nearest-neighbour sentence agreement"),
}
# A sequence classifier with one output (STS-B-like scores): its predictions are compared, not their argmax.
REGRESSION = Task(
    "text-classification",
    AutoModelForSequenceClassification,
    ("logits",),
    "Pearson correlation with fp32 predictions",
    regression=True,
)


def embedding_task(pooling: Pooling) -> Task:
    """A sentence embedder: the token states and the pooled, maybe normalised, sentence embedding."""
    return Task(
        "feature-extraction",
        AutoModel,
        ("last_hidden_state", "sentence_embedding"),
        "nearest-neighbour sentence agreement",
        pooling=pooling,
    )


def describe_pooling(pooling: Pooling) -> str:
    return f"{pooling.mode} pooling" + (", L2-normalised" if pooling.normalize else "")


def task_of(model_dir: str | Path, pooling: Pooling | None = None) -> Task:
    """The task of a saved model, from config.json's `architectures`; a UsageError for anything else. A plain
    encoder is a sentence embedder when `pooling` is given or its folder is a Sentence Transformers model's."""
    config_file = Path(model_dir, "config.json")
    if not config_file.exists():
        raise UsageError(
            f"{model_dir} holds no saved model (config.json); pass a folder a recipe wrote, e.g. outputs/distil_bert."
        )
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as error:  # unreadable, not UTF-8, or not JSON
        raise UsageError(
            f"{config_file} cannot be read ({type(error).__name__}); save the model again with "
            "model.save_pretrained(folder)."
        ) from None
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not architectures:
        raise UsageError(
            f'{config_file} names no architecture (no "architectures" entry), so the head to export is unknown; '
            "save the model with model.save_pretrained(folder), which records it."
        )
    architecture = architectures[0]
    if architecture.endswith("Model"):
        pooling = pooling or Pooling.from_folder(model_dir)
        return embedding_task(pooling) if pooling else TASKS["Model"]
    if pooling is not None:
        raise UsageError(
            f"{model_dir} holds a {architecture}, and pooling into a sentence embedding applies to a plain encoder "
            "(*Model); export it without a pooling, or save its encoder (model.base_model) with save_pretrained."
        )
    for suffix, task in TASKS.items():
        if architecture.endswith(suffix):
            labels = config.get("id2label") or {}  # every saved config has it; absent: transformers' default, 2
            one_score = config.get("problem_type") == "regression" or len(labels) == 1
            return REGRESSION if task is TASKS["ForSequenceClassification"] and one_score else task
    raise UsageError(
        f"{model_dir} holds a {architecture}; export handles masked LMs, sequence classifiers, "
        "question answering and plain encoders (*ForMaskedLM, *ForSequenceClassification, "
        "*ForQuestionAnswering, *Model)."
    )


# --------------------------------------------------------------------------------------------------- fp32 export


class _NamedOutputs(nn.Module):
    """The model with its outputs as a tuple in `names` order, so the ONNX outputs carry exactly those names;
    `sentence_embedding` is `pooling` of the last hidden state over the attention mask."""

    def __init__(self, model: PreTrainedModel, names: Sequence[str], pooling: Pooling | None = None) -> None:
        super().__init__()
        self.model, self.names, self.pooling = model, tuple(names), pooling

    # Named parameters, not **inputs: the tracer hands its inputs over by position.
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra, return_dict=True)
        if self.pooling is not None:
            outputs["sentence_embedding"] = pool(outputs["last_hidden_state"], attention_mask, self.pooling)
        return tuple(outputs[name] for name in self.names)


def input_names(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """input_ids, attention_mask, and token_type_ids for models that take them (BERT; not DistilBERT)."""
    accepted = forward_arguments(model)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    return [n for n in names if n in accepted and (n != "token_type_ids" or n in tokenizer.model_input_names)]


def export_onnx(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path, task: Task) -> Path:
    """Write `model` as fp32 ONNX (opset 17) with dynamic batch and sequence axes; returns the path.

    Uses the TorchScript exporter (`dynamo=False`), which exports BERT and DistilBERT students as they are.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = input_names(model, tokenizer)
    sample = tokenizer(
        ["An example sentence to trace the model with.", "A shorter one."], padding=True, return_tensors="pt"
    )
    axes = {0: "batch_size", 1: "sequence_length"}
    # eval() on the wrapper too: the exporter applies the top module's mode to every submodule, and a wrapper left
    # in training mode exports dropout (measured: logits off by 2.4).
    wrapper = _NamedOutputs(model.float(), task.outputs, task.pooling).eval()
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about Python branches on shapes (attention-mask shortcuts) that it freezes; the
        # parity check on sentences of other lengths and batch sizes is what tells whether that mattered.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (),
            str(path),
            kwargs={n: sample[n] for n in names},
            input_names=names,
            output_names=list(task.outputs),
            dynamic_axes={n: axes for n in [*names, *task.outputs]},
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    return path


@torch.inference_mode()
def max_abs_difference(
    model: PreTrainedModel, onnx_path: str | Path, batch: dict[str, torch.Tensor], task: Task, names: Sequence[str]
) -> tuple[float, float]:
    """(largest |ONNX − PyTorch| over every output, largest |PyTorch| output) on one padded batch."""
    theirs = session(onnx_path).run(list(task.outputs), {n: batch[n].numpy() for n in names})
    ours = _NamedOutputs(model, task.outputs, task.pooling).eval()(**{n: batch[n] for n in names})
    diff = max(float(np.abs(mine.numpy() - out).max()) for mine, out in zip(ours, theirs))
    scale = max(float(mine.abs().max()) for mine in ours)
    return diff, scale


# ----------------------------------------------------------------------------------------------------- report


@dataclass
class SchemeResult:
    name: str
    description: str
    agreement: float
    latency_ms: float | None = None  # batch 1, ms per input; filled in by the speed pass
    size_mb: float = 0.0
    passed: bool = False
    max_relative_error: float | None = None  # a regression head's largest error, relative to fp32's largest score
    mean_cosine: float | None = None  # a sentence embedder: mean cosine of its embeddings with fp32's


@dataclass
class ExportReport:
    """What `export_student` wrote and measured; saved as OUT/export_report.json."""

    model: str
    task: str
    output_dir: str
    fp32_file: str
    int8_file: str | None  # None: no scheme met min_agreement, only fp32 was written
    chosen: str | None
    min_agreement: float
    agreement_measure: str
    items: int  # masks / sentences / questions the agreement counts
    sentences: int
    fp32_max_abs_diff: float
    schemes: list[SchemeResult] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)  # batch 1, ms per input, per model
    speed_sentences: int = 0
    calibration_sentences: int = 0  # held-out sentences after the measured ones, for calibrated schemes
    threads: int = 0  # intra-op threads of PyTorch and ONNX Runtime alike
    machine: str = ""
    load_average: list[float] = field(default_factory=list)  # 1-minute load before and after timing: other work
    versions: dict[str, str] = field(default_factory=dict)
    regression: bool = False  # a one-score head: the schemes' figure is a correlation, not a share of answers
    pooling: str | None = None  # a sentence embedder: the pooling inside its graph (describe_pooling)

    def shown(self, figure: float) -> str:
        """A scheme's figure as people read it: a correlation as a number, an agreement as a share."""
        return format_figure(figure, self.regression)

    def speedup(self, over: str, of: str) -> float | None:
        """How many times faster `of` runs than `over` (both keys of latency_ms), if both were timed."""
        if over in self.latency_ms and of in self.latency_ms:
            return self.latency_ms[over] / self.latency_ms[of]
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder, EXPORT_REPORT_FILE)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> ExportReport:
        """The report that `save` wrote in `folder`."""
        fields = json.loads(Path(folder, EXPORT_REPORT_FILE).read_text())
        fields["schemes"] = [SchemeResult(**scheme) for scheme in fields.get("schemes", [])]
        return cls(**fields)

    def for_card(self) -> OnnxExport:
        """What a model card says of this export: the files, how close each is to PyTorch's answers, and how fast
        the int8 model runs against the teacher."""
        kept = next((s for s in self.schemes if s.name == self.chosen), None)
        teacher_ms = self.latency_ms.get(TEACHER_KEY)
        return OnnxExport(
            task=self.task,
            fp32_file=self.fp32_file,
            fp32_max_abs_diff=self.fp32_max_abs_diff,
            int8_file=self.int8_file,
            int8_scheme=kept.name if kept else None,
            int8_agreement=kept.agreement if kept else None,
            int8_max_relative_error=kept.max_relative_error if kept else None,
            int8_mean_cosine=kept.mean_cosine if kept else None,
            agreement_measure=self.agreement_measure,
            items=self.items,
            int8_speedup=teacher_ms / kept.latency_ms if kept and teacher_ms and kept.latency_ms else None,
            machine=self.machine or None,
            threads=self.threads or None,
        )


TEACHER_KEY = "teacher, PyTorch fp32"
STUDENT_KEY = "student, PyTorch fp32"
FP32_KEY = "student, ONNX fp32"


# ----------------------------------------------------------------------------------------------------- export


def export_student(
    model_dir: str | Path,
    output_dir: str | Path,
    *,
    min_agreement: float = 0.95,
    schemes: Sequence[str] | None = None,
    try_all: bool = False,
    teacher: PreTrainedModel | None = None,
    texts: Sequence[str] | None = None,
    num_sentences: int = 200,
    mask_draws: int = 2,
    speed_sentences: int = 30,
    speed_rounds: int = 3,
    calibration_sentences: int = 64,
    pooling: Pooling | None = None,
) -> ExportReport:
    """Export the student saved in `model_dir` to `output_dir` (layout in this module's docstring).

    Int8 schemes (`schemes`, names from SCHEME_NAMES, default all, in that order) are tried on `num_sentences`
    held-out sentences (`texts`, default the gensim Wikipedia excerpt's held-out articles); the first whose
    agreement with fp32 reaches `min_agreement` becomes onnx/model_quantized.onnx, and the rest are not tried
    unless `try_all`. When none does, only fp32 is written (`int8_file` is None) and a warning says so. Every
    model is then timed at batch 1 on `speed_sentences` sentences: the student in PyTorch and in ONNX Runtime,
    each int8 scheme tried, and `teacher` in PyTorch when given. Calibrated schemes (`smooth_split`,
    `outlier_split`) learn their ranges and weight rounding from the `calibration_sentences` held-out sentences
    that follow the measured ones, so the agreement is measured on text they did not see. A plain encoder with
    `pooling` (default: its folder's, when it is a Sentence Transformers model) is exported as a sentence embedder
    (module docstring); its gate compares the nearest neighbours of the graph's sentence embeddings, and reports
    their mean cosine with fp32's.
    """
    import onnx
    import onnxruntime

    if not 0 <= min_agreement <= 1:
        raise UsageError(
            f"min_agreement must be in [0, 1], got {min_agreement}; 0.95 keeps 95% of fp32's answers, 0 keeps the "
            "first scheme whatever it keeps."
        )
    chosen_schemes = list(schemes or SCHEME_NAMES)
    unknown = [s for s in chosen_schemes if s not in SCHEME_NAMES]
    if unknown:
        raise UsageError(f"unknown int8 scheme(s) {', '.join(unknown)}; choose from {', '.join(SCHEME_NAMES)}.")
    if min(num_sentences, speed_sentences, mask_draws, calibration_sentences) < 1:
        raise UsageError("num_sentences, speed_sentences, mask_draws and calibration_sentences must be ≥ 1.")
    task = task_of(model_dir, pooling)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError, TypeError) as error:
        raise UsageError(
            f"no tokenizer could be loaded from {model_dir} ({type(error).__name__}); save it beside "
            "the model with tokenizer.save_pretrained(folder)."
        ) from None
    if task.pipeline == "fill-mask" and tokenizer.mask_token_id is None:
        raise UsageError(f"the tokenizer in {model_dir} has no mask token, which fill-mask needs.")
    model = task.auto_class.from_pretrained(str(model_dir)).float().eval()
    config = AutoConfig.from_pretrained(str(model_dir)).to_dict()

    # 1. The folder: fp32 ONNX, config and tokenizer; no stale int8 file from an earlier export survives.
    out = Path(output_dir)
    (out / INT8_FILE).unlink(missing_ok=True)
    fp32_path = export_onnx(model, tokenizer, out / FP32_FILE, task)
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if task.pooling is not None:
        copy_sentence_transformers_modules(model_dir, out)

    # 2. fp32 parity with PyTorch on real sentences of different lengths, padded into one batch.
    held_out = held_out_sentences(texts)
    sentences, calibration_text = held_out[:num_sentences], held_out[num_sentences:][:calibration_sentences]
    if len(sentences) < 3:
        raise UsageError(f"the held-out text gives {len(sentences)} sentences of 6+ words; pass more text.")
    max_length = min(128, config.get("max_position_embeddings", 512))
    names = [i.name for i in session(fp32_path).get_inputs()]  # the graph's: the exporter drops an unused input
    batch = tokenizer(sentences[:8], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    diff, scale = max_abs_difference(model, fp32_path, dict(batch), task, names)
    if diff > FP32_TOLERANCE * max(1.0, scale):
        raise RunFailed(
            f"the fp32 ONNX export differs from PyTorch by {diff:.2g} (outputs up to {scale:.3g}); "
            f"{fp32_path} is kept for inspection but should not be used."
        )

    # 3. The int8 gate: answers of each scheme against fp32 ONNX (equal to PyTorch, step 2) at batch 1.
    feeds = fidelity_feeds(task, tokenizer, sentences, names, max_length, mask_draws)
    calibration = fidelity_feeds(task, tokenizer, calibration_text, names, max_length, 1) if calibration_text else []
    fp32 = session(fp32_path)
    fp32_outputs = [fp32.run(None, f) for f in feeds]
    reference = answers(task, fp32_outputs, feeds, tokenizer.mask_token_id)
    if len(reference) == 0:
        raise UsageError("the held-out text gave no item to compare (no [MASK] drawn); pass longer sentences.")
    candidates = out / "onnx" / "candidates"
    candidates.mkdir(exist_ok=True)
    tried: list[SchemeResult] = []
    sessions: dict[str, Any] = {}
    chosen: str | None = None
    try:
        for scheme in (s for s in SCHEMES if s.name in chosen_schemes):
            path = candidates / f"{scheme.name}.onnx"
            if scheme.calibrated and not calibration:
                raise UsageError(
                    f"int8 scheme {scheme.name} calibrates on held-out sentences beyond the {len(sentences)} "
                    "measured, and the text has none left; pass more text, lower num_sentences, or leave "
                    f"{scheme.name} out of the schemes."
                )
            scheme.quantize(fp32_path, path, config, calibration)
            sessions[scheme.name] = int8 = session(path)
            int8_outputs = [int8.run(None, f) for f in feeds]
            ours = answers(task, int8_outputs, feeds, tokenizer.mask_token_id)
            agreed = gate_figure(task, ours, reference)
            result = SchemeResult(
                scheme.name,
                scheme.description,
                agreed,
                size_mb=path.stat().st_size / 1e6,
                passed=agreed >= min_agreement,
                max_relative_error=largest_relative_error(ours, reference) if task.regression else None,
                mean_cosine=mean_cosine(task, int8_outputs, fp32_outputs) if task.pooling else None,
            )
            tried.append(result)
            figure = format_figure(agreed, task.regression)
            logger.info(f"int8 scheme {scheme.name}: {task.agreement} {figure} over {len(reference)} items")
            if result.passed and chosen is None:
                chosen = scheme.name
                shutil.copyfile(path, out / INT8_FILE)
                if not try_all:
                    break

        # 4. Speed at batch 1, every model in turn on the same sentences.
        runners = {STUDENT_KEY: torch_runner(model), FP32_KEY: lambda f: fp32.run(None, f)}
        if teacher is not None:
            runners = {TEACHER_KEY: torch_runner(teacher), **runners}
        for name, ort_session in sessions.items():
            runners[f"student, ONNX int8 {name}"] = (lambda s: lambda f: s.run(None, f))(ort_session)
        speed_feeds = fidelity_feeds(task, tokenizer, sentences[:speed_sentences], names, max_length, 1)
        load = [os.getloadavg()[0]]
        timed = latencies(runners, speed_feeds, speed_rounds)
        load.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(candidates, ignore_errors=True)
    for result in tried:
        result.latency_ms = timed[f"student, ONNX int8 {result.name}"]

    report = ExportReport(
        model=str(model_dir),
        task=task.pipeline,
        output_dir=str(out),
        fp32_file=FP32_FILE,
        int8_file=INT8_FILE if chosen else None,
        chosen=chosen,
        min_agreement=min_agreement,
        agreement_measure=task.agreement,
        items=len(reference),
        sentences=len(sentences),
        fp32_max_abs_diff=diff,
        schemes=tried,
        latency_ms=timed,
        speed_sentences=len(speed_feeds),
        calibration_sentences=len(calibration_text),
        threads=torch.get_num_threads(),
        machine=describe_machine(),
        load_average=load,
        versions={"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        regression=task.regression,
        pooling=describe_pooling(task.pooling) if task.pooling else None,
    )
    report.save(out)
    if chosen is None:
        best = max(tried, key=lambda r: r.agreement)
        logger.warning(
            f"no int8 scheme reached {report.shown(min_agreement)} {task.agreement} (best: {best.name} at "
            f"{report.shown(best.agreement)}); wrote fp32 only: {out / FP32_FILE}"
        )
    return report


def copy_sentence_transformers_modules(model_dir: str | Path, out: Path) -> None:
    """Copy a Sentence Transformers model's module chain (modules.json, its config files, each module's folder) so
    that `SentenceTransformer(out, backend="onnx")` rebuilds the same pooling and normalisation on the ONNX file."""
    source = Path(model_dir)
    if not (source / "modules.json").is_file() or source.resolve() == out.resolve():
        return
    for name in SENTENCE_TRANSFORMERS_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    for module in json.loads((source / "modules.json").read_text()):
        folder = module.get("path") or ""
        if folder and (source / folder).is_dir():  # "" is the transformer itself: config and tokenizer, saved above
            shutil.copytree(source / folder, out / folder, dirs_exist_ok=True)
