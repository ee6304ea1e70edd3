"""The model cards: a distilled model's and a BiLSTM student's, rendered from a typed report (`report.py`).

Templates are shipped in `hf_distil.model_cards`. A card states only what its report holds.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .plot import PLOT_FILE, plot_loss_terms
from .report import BiLSTMCardReport, CardReport, EmbeddingCardReport, OnnxExport

TEMPLATE = "distilled_model.md"
BILSTM_TEMPLATE = "bilstm_student.md"
EMBEDDING_TEMPLATE = "sentence_embedder.md"
EMBEDDING_STUDENT_LABEL = "student (distilled)"  # the row of an embedding card's table that is this model
CARD_FILE = "README.md"

EXAMPLE_INPUTS = {  # what the card's ONNX snippets call the pipeline with, per task
    "fill-mask": '"Paris is the [MASK] of France."',
    "text-classification": '"A warm, funny and moving film."',
    "question-answering": '"Where is the Eiffel Tower?", "The Eiffel Tower stands in Paris."',
    "feature-extraction": '"Paris is the capital of France.", { pooling: "mean", normalize: true }',
}
HELD_OUT_ROWS = (  # (field of HeldOut, label, scale); the teacher's agreement with itself is not a measurement
    ("accuracy", "top-1 accuracy at [MASK] (%)", 100),
    ("top5_accuracy", "top-5 accuracy at [MASK] (%)", 100),
    ("perplexity", "MLM perplexity", 1),
    ("teacher_agreement", "top-1 agreement with the teacher (%)", 100),
)


def describe_speedup(ratio: float, than: str = "the teacher") -> str:
    """A speed ratio (teacher time / student time) in words: "1.94x faster than the teacher", and below 1
    "0.52x the speed of the teacher (slower)" rather than a "0.52x faster" that reads as a gain."""
    shown = f"{ratio:.2f}x"
    if shown == "1.00x":
        return f"as fast as {than} ({shown})"
    return f"{shown} faster than {than}" if ratio > 1 else f"{shown} the speed of {than} (slower)"


def _millions(count: int | None) -> str | None:
    if not count:
        return None
    return f"{count / 1e6:.1f}M" if count >= 1e5 else f"{count / 1e3:.1f}K"


def _rows(rows: list[tuple[str, object, object]]) -> list[tuple[str, str, str]]:
    """Keep the rows whose student value is known; an unknown teacher value shows as an em dash."""
    return [(label, "—" if t is None else str(t), str(s)) for label, t, s in rows if s is not None]


def _teacher_link(teacher: str | None, base_model: str | None) -> str:
    """The teacher as the card names it: its name, and the Hub model it is (or is built on) as a link."""
    if teacher and base_model and base_model != teacher:
        return f"`{teacher}` (built on [{base_model}](https://huggingface.co/{base_model}))"
    if base_model:
        return f"[{base_model}](https://huggingface.co/{base_model})"
    return f"`{teacher}`" if teacher else "its teacher"


def _from_template(template: str, card_data: ModelCardData, **fields: Any) -> ModelCard:
    text = importlib.resources.files("hf_distil.model_cards").joinpath(template).read_text()
    return ModelCard.from_template(card_data, template_str=text, **fields)


def _onnx_section(onnx: OnnxExport) -> dict[str, Any]:
    """The rows, speed sentence and snippets of the card's "ONNX Runtime / transformers.js" section."""
    diff = onnx.fp32_max_abs_diff
    rows = [(onnx.fp32_file, "fp32", f"largest difference from PyTorch: {diff:.0e}" if diff is not None else "")]
    speed = None
    if onnx.int8_file and onnx.int8_scheme and onnx.int8_agreement is not None:
        if onnx.int8_max_relative_error is not None:  # a regression head: scores, not answers, are compared
            fidelity = (
                f"{onnx.agreement_measure}: {onnx.int8_agreement:.3f}, largest error "
                f"{onnx.int8_max_relative_error:.1%} of the largest fp32 score ({onnx.items} held-out sentences)"
            )
        else:
            fidelity = (
                f"keeps {onnx.int8_agreement:.1%} of fp32's answers ({onnx.agreement_measure}, "
                f"{onnx.items} items of held-out text)"
            )
            if onnx.int8_mean_cosine is not None:
                fidelity += f"; mean cosine with fp32's embeddings {onnx.int8_mean_cosine:.4f}"
        rows.append((onnx.int8_file, f"int8 (`{onnx.int8_scheme}`)", fidelity))
        if onnx.int8_speedup and onnx.machine:
            threads = onnx.threads
            where = f"{onnx.machine}, {threads} thread{'s' if threads > 1 else ''}" if threads else onnx.machine
            speed = (
                f"At batch size 1 ({where}) the int8 model runs "
                f"**{describe_speedup(onnx.int8_speedup, 'the teacher in PyTorch fp32')}**."
            )
    elif onnx.int8_file:
        rows.append((onnx.int8_file, "int8", ""))
    return {
        "rows": rows,
        "task": onnx.task,
        "int8": onnx.int8_file is not None,
        "speed": speed,
        "example": EXAMPLE_INPUTS[onnx.task],
    }


def _size_and_speed(report: CardReport) -> tuple[list[tuple[str, str, str]], str | None]:
    """The size rows (parameters, layers, CPU time per sentence) and the sentence that states the speed-up."""
    speed = report.speed

    def per_sentence(seconds: float | None) -> str | None:
        return f"{seconds / speed.sentences * 1e3:.1f} ms" if seconds is not None and speed.sentences else None

    size_rows = [
        ("parameters", _millions(report.teacher_parameters), _millions(report.student_parameters)),
        ("layers", report.teacher_layers, report.student_layers),
    ]
    if trimmed := _trimmed_vocabulary(report):
        size_rows.append(("vocabulary (WordPiece tokens)", trimmed[0], f"{trimmed[1]} (trimmed)"))
    speed_sentence = None
    if speed is not None:
        size_rows += [
            (
                "CPU time per sentence, batch 1, encoder",
                per_sentence(speed.encoder_teacher_seconds),
                per_sentence(speed.encoder_student_seconds),
            ),
            (
                "CPU time per sentence, batch 1, masked LM",
                per_sentence(speed.teacher_seconds),
                per_sentence(speed.student_seconds),
            ),
        ]
        encoder = speed.encoder_teacher_seconds and speed.encoder_student_seconds
        ratio = (
            speed.encoder_teacher_seconds / speed.encoder_student_seconds
            if encoder
            else speed.teacher_seconds / speed.student_seconds
            if speed.teacher_seconds and speed.student_seconds
            else None
        )
        if ratio and report.hardware:
            speed_sentence = (
                f"At batch size 1 ({report.hardware}) the student's {'encoder' if encoder else 'model'} "
                f"runs **{describe_speedup(ratio)}**."
            )
    return _rows(size_rows), speed_sentence


def _trimmed_vocabulary(report: CardReport) -> tuple[str, str] | None:
    """(teacher's, student's) vocabulary sizes as the card prints them, if the student's was trimmed."""
    if report.vocabulary_size is None:
        return None
    teacher = report.teacher_vocabulary_size
    return ("—" if teacher is None else f"{teacher:,}"), f"{report.vocabulary_size:,}"


def _layer_map(layer_map: list[int] | str | None) -> str | None:
    return ", ".join(map(str, layer_map)) if isinstance(layer_map, list) else layer_map


def _recipe(report: CardReport) -> list[tuple[str, Any]]:
    """The training settings the report knows, as (setting, value) rows."""
    masking = report.masking
    soft_targets = None
    if report.restrict_ce_to_mask is not None:
        soft_targets = "masked tokens" if report.restrict_ce_to_mask else "every non-pad token"
    recipe = [
        ("loss weights", ", ".join(f"{name} {weight:g}" for name, weight in report.loss_weights.items()) or None),
        ("temperature", report.temperature),
        ("soft targets at", soft_targets),
        ("layer map (teacher layers kept)", _layer_map(report.layer_map)),
        (
            "masking",
            f"{masking.probability} of tokens; {masking.mask_replace} [MASK] / {masking.random_replace} random; "
            f"smoothing {masking.smoothing}"
            if masking
            else None,
        ),
        ("effective batch (sequences per update)", report.sequences_per_update),
        ("optimizer steps", report.optimizer_steps),
        ("learning rate", report.learning_rate),
        ("hardware", report.hardware),
        ("training time (s)", report.train_seconds),
    ]
    return [(k, v) for k, v in recipe if v is not None]


def _objective(weights: dict[str, float]) -> str:
    return " + ".join(name.split(" (")[0] for name in weights) if weights else "distillation losses"


def _eval_result(task_type: str, dataset: str, metric: str, value: float) -> EvalResult:
    """One model-index entry: a metric of this model on a dataset named by the report."""
    return EvalResult(
        task_type=task_type, dataset_type=dataset, dataset_name=dataset, metric_type=metric, metric_value=value
    )


def render_model_card(
    report: CardReport, repo_id: str, *, license: str = "apache-2.0", plot: str | None = None
) -> ModelCard:
    """The card of a distilled student: what it is, its size and speed against the teacher, its held-out results
    (also as model-index metadata), its training settings, the loss plot `plot` (a file beside the card) and, with
    an ONNX export, how to run it in ONNX Runtime and transformers.js."""
    teacher_results, student_results = report.teacher_results, report.student_results
    dataset_name = (report.datasets or [report.eval_dataset or "held-out text"])[0]
    eval_rows, eval_results = [], []
    for key, label, scale in HELD_OUT_ROWS:
        value = getattr(student_results, key)
        if value is None:
            continue
        theirs = getattr(teacher_results, key)
        eval_rows.append((label, "—" if theirs is None else f"{theirs * scale:.2f}", f"{value * scale:.2f}"))
        eval_results.append(_eval_result("fill-mask", dataset_name, key, round(value * scale, 2)))

    size_rows, speed_sentence = _size_and_speed(report)
    recipe = _recipe(report)
    layer_map = _layer_map(report.layer_map)
    weights = report.loss_weights
    onnx = _onnx_section(report.onnx) if report.onnx else None
    card_data = ModelCardData(
        base_model=report.base_model,
        tags=["distillation", "distilbert", "fill-mask", "hf_distil"] + (["onnx", "transformers.js"] if onnx else []),
        datasets=report.datasets,
        license=license,
        pipeline_tag="fill-mask",
        model_name=repo_id,
        eval_results=eval_results or None,
    )
    return _from_template(
        TEMPLATE,
        card_data,
        model_name=repo_id,
        repo_id=repo_id,
        teacher_link=_teacher_link(report.teacher, report.base_model),
        student_layers=report.student_layers,
        layer_map=layer_map,
        vocabulary=_trimmed_vocabulary(report),
        objective=_objective(weights),
        size_rows=size_rows,
        speed_sentence=speed_sentence,
        eval_rows=eval_rows,
        eval_dataset=dataset_name,
        recipe=recipe,
        plot=plot,
        onnx=onnx,
    )


def render_embedding_card(
    report: EmbeddingCardReport, repo_id: str, *, license: str = "apache-2.0", plot: str | None = None
) -> ModelCard:
    """The card of a distilled sentence embedder: what it is, its size and speed against the teacher, its
    correlation with human similarity ratings (also as model-index metadata) and its agreement with the teacher,
    its training settings, the loss plot and how to load it in sentence-transformers."""
    dataset = report.similarity_dataset or "human similarity ratings"
    similarity_rows, eval_results = [], []
    for score in report.similarity:
        if score.pearson is None or score.spearman is None:
            similarity_rows.append((score.label, "—", score.note or "—"))
            continue
        similarity_rows.append((score.label, f"{score.pearson:.3f}", f"{score.spearman:.3f}"))
        if score.label == EMBEDDING_STUDENT_LABEL:  # the model-index describes this model only
            eval_results += [
                _eval_result("sentence-similarity", dataset, metric, round(value, 4))
                for metric, value in (("pearson", score.pearson), ("spearman", score.spearman))
            ]
    agreement_rows = [
        (label, f"{value:.3f}")
        for label, value in (
            ("mean cosine between student and teacher embeddings", report.mean_cosine),
            ("nearest-neighbour agreement", report.neighbour_agreement),
        )
        if value is not None and value == value  # NaN: a student of another width has no mean cosine
    ]
    size_rows, speed_sentence = _size_and_speed(report)
    card_data = ModelCardData(
        base_model=report.base_model,
        tags=["distillation", "sentence-transformers", "sentence-similarity", "feature-extraction", "hf_distil"],
        datasets=report.datasets,
        library_name="sentence-transformers",
        license=license,
        pipeline_tag="sentence-similarity",
        model_name=repo_id,
        eval_results=eval_results or None,
    )
    return _from_template(
        EMBEDDING_TEMPLATE,
        card_data,
        model_name=repo_id,
        repo_id=repo_id,
        teacher_link=_teacher_link(report.teacher, report.base_model),
        student_layers=report.student_layers,
        layer_map=_layer_map(report.layer_map),
        pooling=report.pooling or "its pooling",
        objective=_objective(report.loss_weights),
        max_seq_length=report.max_seq_length,
        size_rows=size_rows,
        speed_sentence=speed_sentence,
        similarity_dataset=dataset,
        similarity_rows=similarity_rows,
        agreement_sentences=report.agreement_sentences,
        agreement_rows=agreement_rows,
        recipe=_recipe(report),
        plot=plot,
    )


def render_bilstm_card(report: BiLSTMCardReport, repo_id: str, *, license: str = "apache-2.0") -> ModelCard:
    """The card of a BiLSTM student: what it is, its held-out scores over seeds, its size and CPU time."""
    size_rows = [
        ("parameters", _millions(report.teacher_parameters), _millions(report.student_parameters)),
        (
            "parameters outside the word embeddings",
            _millions(report.teacher_non_embedding),
            _millions(report.student_non_embedding),
        ),
        *(
            (
                f"CPU time per example in {t.runtime}, batch {t.batch_size} ({t.threads} threads)",
                f"{t.teacher_ms:.2f} ms",
                f"{t.student_ms:.2f} ms ({describe_speedup(t.teacher_ms / t.student_ms)})",
            )
            for t in report.cpu_times
        ),
    ]
    objective = (
        "the KL to the teacher's softened outputs"
        if report.kd_loss == "kl"
        else "the squared error to the teacher's logits"
    )
    if report.gold_labels:
        objective += " plus cross-entropy on the gold labels"
    transfer = None
    if report.transfer_examples:
        transfer = f"{report.transfer_examples} examples ({report.augmentation or 'no augmentation'})"
    card_data = ModelCardData(
        base_model=report.base_model,
        tags=["distillation", "bilstm", "text-classification", "hf_distil"],
        license=license,
        pipeline_tag="text-classification",
        model_name=repo_id,
    )
    return _from_template(
        BILSTM_TEMPLATE,
        card_data,
        model_name=repo_id,
        repo_id=repo_id,
        teacher_link=_teacher_link(report.teacher, report.base_model),
        hidden_size=report.hidden_size,
        classifier_size=report.classifier_size,
        pooling="max-pooled states" if report.max_pooling else "final states of both directions",
        pair_encoder=report.pair_encoder,
        objective=objective,
        transfer=transfer,
        task=report.task,
        metric=report.metric,
        seeds=report.seeds,
        score_rows=[(s.label, f"{s.mean:.2f} ± {s.sd:.2f}") for s in report.scores],
        size_rows=_rows(size_rows),
    )


def save_model_card(
    report: CardReport | EmbeddingCardReport | BiLSTMCardReport,
    folder: str | Path,
    repo_id: str | None = None,
    *,
    license: str = "apache-2.0",
) -> ModelCard:
    """Write the card of `report` as README.md in `folder` (the repository's name by default: the folder's), with
    the loss plot beside it when the report holds a log history."""
    folder = Path(folder)
    repo_id = repo_id or folder.name
    if isinstance(report, BiLSTMCardReport):
        card = render_bilstm_card(report, repo_id, license=license)
    else:
        plot = PLOT_FILE if plot_loss_terms(report.log_history, folder / PLOT_FILE) else None
        render = render_embedding_card if isinstance(report, EmbeddingCardReport) else render_model_card
        card = render(report, repo_id, license=license, plot=plot)
    card.save(folder / CARD_FILE)
    return card
