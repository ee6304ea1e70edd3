"""Publishing: the model card of a distilled model, and `push_to_hub` (safetensors only, never pickles)."""

from __future__ import annotations

import importlib.resources
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from transformers import Trainer
from transformers.utils import logging

from ..errors import RunFailed, UsageError
from ..evaluation.masked_lm import RunReport, describe_speedup
from ..losses.terms import LOSS_TERMS
from ..models.bilstm import SPEED_RUNTIMES
from ..student import PROVENANCE_KEY

logger = logging.get_logger(__name__)

TEMPLATE = "distilled_model.md"
BILSTM_TEMPLATE = "bilstm_student.md"
# What reaches the Hub: weights as safetensors, configs, tokenizer, card, plot, metrics, arguments, and the ONNX
# export of recipes/export.py (onnx/model.onnx, onnx/model_quantized.onnx; its export_report.json is a *.json).
UPLOAD_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.md", "*.png", "*.model", "onnx/*.onnx"]
NEVER_UPLOADED = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "checkpoint-*/*", "runs/*"]
ARGS_FILE = "training_args.json"


def save_training_arguments(trainer: Trainer, folder: str | Path) -> None:
    """The arguments as JSON (Trainer's own copy is a pickle, which never leaves the machine).

    `TrainingArguments.to_dict` already replaces every `*_token` value by a placeholder.
    """
    Path(folder, ARGS_FILE).write_text(trainer.args.to_json_string())


def plot_loss_terms(log_history: list[dict[str, Any]], path: str | Path) -> bool:
    """PNG of the total loss and every logged term over training steps; False when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = [h for h in log_history if "loss" in h and "step" in h]
    if not logs:
        return False
    keys = ["loss"] + sorted({k for h in logs for k in h if k.startswith("loss_")})
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        points = [(h["step"], h[key]) for h in logs if key in h]
        ax.plot(*zip(*points), label=key, linewidth=2 if key == "loss" else 1)
    ax.set_xlabel("optimizer step")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _hub_id(name: str) -> str | None:
    """`name` if it can be a Hub model id (not a local folder), else None."""
    return name if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) and not Path(name).exists() else None


def _saved_parameters(folder: Path) -> int | None:
    """Parameters of the saved model, from its safetensors headers (no weights are read)."""
    from safetensors import safe_open

    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as weights:
            for name in weights.keys():
                total += math.prod(weights.get_slice(name).get_shape())
    return total


def _millions(count: int | None) -> str | None:
    if not count:
        return None
    return f"{count / 1e6:.1f}M" if count >= 1e5 else f"{count / 1e3:.1f}K"


def _rows(rows: list[tuple[str, object, object]]) -> list[tuple[str, str, str]]:
    """Keep the rows whose student value is known; an unknown teacher value shows as an em dash."""
    return [(label, "—" if t is None else str(t), str(s)) for label, t, s in rows if s is not None]


EXAMPLE_INPUTS = {  # what the card's ONNX snippets call the pipeline with, per task
    "fill-mask": '"Paris is the [MASK] of France."',
    "text-classification": '"A warm, funny and moving film."',
    "question-answering": '"Where is the Eiffel Tower?", "The Eiffel Tower stands in Paris."',
    "feature-extraction": '"Paris is the capital of France.", { pooling: "mean", normalize: true }',
}


def onnx_files(folder: Path) -> dict[str, Any] | None:
    """What the card says about an ONNX export in `folder` (recipes/export.py), or None when there is none.

    Rows come from the files present; figures from export_report.json when it is there.
    """
    from ..deploy.export import EXPORT_REPORT_FILE, FP32_FILE, INT8_FILE, TEACHER_KEY, task_of

    if not (folder / FP32_FILE).exists():
        return None
    report = _read_json(folder / EXPORT_REPORT_FILE)
    diff = report.get("fp32_max_abs_diff")
    rows = [(FP32_FILE, "fp32", f"largest difference from PyTorch: {diff:.0e}" if diff is not None else "")]
    speed = None
    if (folder / INT8_FILE).exists():
        kept = next((s for s in report.get("schemes", []) if s["name"] == report.get("chosen")), None)
        if kept:
            rows.append(
                (
                    INT8_FILE,
                    f"int8 (`{kept['name']}`)",
                    f"keeps {kept['agreement']:.1%} of fp32's answers ({report['agreement_measure']}, "
                    f"{report['items']} items of held-out text)",
                )
            )
            teacher_ms = report.get("latency_ms", {}).get(TEACHER_KEY)
            if teacher_ms and kept.get("latency_ms"):
                threads = report.get("threads")
                where = (
                    f"{report['machine']}, {threads} thread{'s' if threads > 1 else ''}"
                    if threads
                    else report["machine"]
                )
                speed = (
                    f"At batch size 1 ({where}) the int8 model runs "
                    f"**{describe_speedup(teacher_ms / kept['latency_ms'], 'the teacher in PyTorch fp32')}**."
                )
        else:
            rows.append((INT8_FILE, "int8", ""))
    task = report.get("task") or task_of(folder).pipeline
    return {
        "rows": rows,
        "task": task,
        "int8": (folder / INT8_FILE).exists(),
        "speed": speed,
        "example": EXAMPLE_INPUTS[task],
    }


def _teacher_link(teacher: str | None, base_model: str | None) -> str:
    """The teacher as the card names it: its name, and the Hub model it is (or is built on) as a link."""
    if teacher and base_model and base_model != teacher:
        return f"`{teacher}` (built on [{base_model}](https://huggingface.co/{base_model}))"
    if base_model:
        return f"[{base_model}](https://huggingface.co/{base_model})"
    return f"`{teacher}`" if teacher else "its teacher"


def _from_template(template: str, card_data: ModelCardData, **fields: Any) -> ModelCard:
    """A card from one of the templates shipped in hf_distil.model_cards (the repository's model_cards/)."""
    text = importlib.resources.files("hf_distil.model_cards").joinpath(template).read_text()
    return ModelCard.from_template(card_data, template_str=text, **fields)


def render_model_card(
    folder: str | Path,
    repo_id: str | None = None,
    teacher: str | None = None,
    datasets: list[str] | None = None,
    license: str = "apache-2.0",
    base_model: str | None = None,
    world_size: int | None = None,
) -> ModelCard:
    """Build the card of a saved student from what its folder holds; writes loss_terms.png beside it.

    Reads config.json (layers, and the teacher and layer map recorded by `init_student_from_teacher`), the
    safetensors headers (parameters), training_args.json, trainer_state.json (steps, loss curve) and, when
    recipes/distil_bert.py wrote it, held_out_results.json (held-out metrics, speed, hardware). A value
    that none of them holds is left out of the card, never printed as "?" or "nan". An ONNX export beside the
    weights (onnx/*.onnx, from recipes/export.py) adds a section on ONNX Runtime and transformers.js.
    """
    from ..models.bilstm import BiLSTMConfig
    from ..teachers import BASE_MODELS

    folder = Path(folder)
    config = _read_json(folder / "config.json")
    if config.get("model_type") == BiLSTMConfig.model_type:
        return render_bilstm_card(folder, repo_id=repo_id, teacher=teacher, license=license)
    args = _read_json(folder / ARGS_FILE)
    state = _read_json(folder / "trainer_state.json")
    report = RunReport.load(folder)
    provenance = config.get(PROVENANCE_KEY, {})
    teacher = teacher or report.teacher_name or provenance.get("teacher")
    repo_id = repo_id or folder.name
    plot = "loss_terms.png" if plot_loss_terms(state.get("log_history", []), folder / "loss_terms.png") else None
    base_model = base_model or report.base_model or BASE_MODELS.get(teacher) or (teacher and _hub_id(teacher))

    student_metrics, teacher_metrics = report.student, report.teacher
    dataset_name = (datasets or [report.eval_dataset or "held-out text"])[0]
    metric_rows, eval_results = [], []
    for key, label, scale in (
        ("accuracy", "top-1 accuracy at [MASK] (%)", 100),
        ("top5_accuracy", "top-5 accuracy at [MASK] (%)", 100),
        ("perplexity", "MLM perplexity", 1),
        ("teacher_agreement", "top-1 agreement with the teacher (%)", 100),
    ):
        if key in student_metrics:
            value = round(student_metrics[key] * scale, 2)
            theirs = f"{teacher_metrics[key] * scale:.2f}" if key in teacher_metrics else None
            metric_rows.append((label, theirs, f"{value:.2f}"))
            eval_results.append(
                EvalResult(
                    task_type="fill-mask",
                    dataset_type=dataset_name,
                    dataset_name=dataset_name,
                    metric_type=key,
                    metric_value=value,
                )
            )

    speed = report.speed_batch_1
    sentences = report.speed_sentences

    def per_sentence(key: str) -> str | None:
        return f"{speed[key] / sentences * 1e3:.1f} ms" if key in speed and sentences else None

    student_layers = config.get("n_layers", config.get("num_hidden_layers"))
    size_rows = _rows(
        [
            (
                "parameters",
                _millions(provenance.get("teacher_parameters") or report.params.get("teacher")),
                _millions(_saved_parameters(folder) or report.params.get("student")),
            ),
            ("layers", provenance.get("teacher_num_layers") or report.teacher_layers, student_layers),
            (
                "CPU time per sentence, batch 1, encoder",
                per_sentence("encoder_teacher_seconds"),
                per_sentence("encoder_student_seconds"),
            ),
            (
                "CPU time per sentence, batch 1, masked LM",
                per_sentence("teacher_seconds"),
                per_sentence("student_seconds"),
            ),
        ]
    )
    ratio = speed.get("encoder_speedup", speed.get("speedup"))
    speed_sentence = (
        f"At batch size 1 ({report.hardware}) the student's {'encoder' if 'encoder_speedup' in speed else 'model'} "
        f"runs **{describe_speedup(ratio)}**."
        if ratio and report.hardware
        else None
    )

    world_size = world_size or report.world_size
    weights = {term.description: args[term.weight_field] for term in LOSS_TERMS if args.get(term.weight_field)}
    masking = (
        f"{args['mlm_probability']} of tokens; {args['mask_replace_prob']} [MASK] / "
        f"{args['random_replace_prob']} random; "
        f"smoothing {args['mlm_smoothing']}"
        if {"mlm_probability", "mask_replace_prob"} <= set(args)
        else None
    )
    layer_map = provenance.get("teacher_layers") or report.layer_map
    layer_map = ", ".join(map(str, layer_map)) if isinstance(layer_map, list) else layer_map
    recipe = [
        ("loss weights", ", ".join(f"{name} {weight:g}" for name, weight in weights.items()) or None),
        ("temperature", args.get("temperature")),
        (
            "soft targets at",
            None
            if "restrict_ce_to_mask" not in args
            else "masked tokens"
            if args["restrict_ce_to_mask"]
            else "every non-pad token",
        ),
        ("layer map (teacher layers kept)", layer_map),
        ("masking", masking),
        (
            "effective batch (sequences per update)",
            args["per_device_train_batch_size"] * args.get("gradient_accumulation_steps", 1) * world_size
            if world_size and args
            else None,
        ),
        ("optimizer steps", state.get("global_step")),
        ("learning rate", args.get("learning_rate")),
        ("hardware", report.hardware),
        ("training time (s)", report.train_seconds),
    ]
    onnx = onnx_files(folder)
    card_data = ModelCardData(
        base_model=base_model,
        tags=["distillation", "distilbert", "fill-mask", "hf_distil"] + (["onnx", "transformers.js"] if onnx else []),
        datasets=datasets,
        license=license,
        pipeline_tag="fill-mask",
        model_name=repo_id,
        eval_results=eval_results or None,
    )
    objective = " + ".join(name.split(" (")[0] for name in weights) if weights else "distillation losses"
    teacher_link = _teacher_link(teacher, base_model)
    return _from_template(
        TEMPLATE,
        card_data,
        model_name=repo_id,
        repo_id=repo_id,
        teacher_link=teacher_link,
        student_layers=student_layers,
        layer_map=layer_map,
        objective=objective,
        size_rows=size_rows,
        speed_sentence=speed_sentence,
        eval_rows=metric_rows,
        eval_dataset=dataset_name,
        recipe=[(k, v) for k, v in recipe if v is not None],
        plot=plot,
        onnx=onnx,
    )


def render_bilstm_card(
    folder: str | Path, repo_id: str | None = None, teacher: str | None = None, license: str = "apache-2.0"
) -> ModelCard:
    """The card of a BiLSTM student (`hf_distil.bilstm`): what it is, from config.json, and what
    recipes/distil_bilstm.py measured, from results.json beside it (scores over seeds, size, CPU time)."""
    from ..models.bilstm import RESULTS_FILE
    from ..teachers import BASE_MODELS

    folder = Path(folder)
    config = _read_json(folder / "config.json")
    results = _read_json(folder / RESULTS_FILE)
    provenance = config.get(PROVENANCE_KEY, {})
    teacher = teacher or results.get("teacher") or provenance.get("teacher")
    repo_id = repo_id or folder.name
    base_model = BASE_MODELS.get(teacher) or (teacher and _hub_id(teacher))
    teacher_link = _teacher_link(teacher, base_model)
    rows = results.get("rows", {})
    score_rows = [(r["label"], f"{r['mean']:.2f} ± {r['sd']:.2f}") for r in rows.values()]
    params = results.get("params", {})
    speed = results.get("speed", {})
    size_rows = _rows(
        [
            ("parameters", _millions(provenance.get("teacher_parameters")), _millions(_saved_parameters(folder))),
            (
                "parameters outside the word embeddings",
                _millions(params.get("teacher_non_embedding")),
                _millions(params.get("bilstm_non_embedding")),
            ),
            *(
                (
                    f"CPU time per example in {runtime}, batch {size} ({speed['threads']} threads)",
                    f"{speed[f'{key}_{size}']['teacher_ms']:.2f} ms",
                    f"{speed[f'{key}_{size}']['bilstm_ms']:.2f} ms "
                    f"({describe_speedup(speed[f'{key}_{size}']['speedup'])})",
                )
                for key, runtime in SPEED_RUNTIMES.items()
                for size in (1, 32)
                if f"{key}_{size}" in speed
            ),
        ]
    )
    kept = rows.get(results.get("kept"), {})
    settings = results.get("settings", {})
    objective = (
        "the KL to the teacher's softened outputs"
        if settings.get("kd_loss") == "kl"
        else "the squared error to the teacher's logits"
    )
    if settings.get("alpha_task", 1) > 0:
        objective += " plus cross-entropy on the gold labels"
    card_data = ModelCardData(
        base_model=base_model,
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
        teacher_link=teacher_link,
        hidden_size=config.get("hidden_size"),
        classifier_size=config.get("classifier_size"),
        pooling="max-pooled states" if config.get("pooling") == "max" else "final states of both directions",
        pair_encoder=config.get("pair_encoder"),
        objective=objective,
        transfer=f"{kept['examples']} examples ({kept['label'].split('distilled')[-1].strip() or 'no augmentation'})"
        if kept.get("examples")
        else None,
        task=results.get("task"),
        metric=results.get("metric"),
        seeds=len(results.get("seeds", [])),
        score_rows=score_rows,
        size_rows=size_rows,
    )


def push_to_hub(
    path_or_trainer: str | Path | Trainer,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str | None:
    """Upload a saved student (or a Trainer's output) with its card; returns the commit URL.

    Given a Trainer, every process saves (ZeRO-3 gathers the weights), the card is written from the
    trainer's state, and the main process uploads (others return None). Honours HF_ENDPOINT, read at call
    time. Only safetensors weights, JSON, the tokenizer, the card and its plot leave the machine. The token
    comes from `token`, else HF_TOKEN or `hf auth login`. A failed upload changes nothing local and raises
    `RunFailed` with one line saying how to retry.
    """
    if isinstance(path_or_trainer, Trainer):
        trainer = path_or_trainer
        folder = Path(trainer.args.output_dir)
        # With args.push_to_hub, save_model would push again (and so on): Trainer's own guard stops that.
        trainer.save_model(str(folder), _internal_call=True)
        if not trainer.is_world_process_zero():
            return None
        trainer.state.save_to_json(str(folder / "trainer_state.json"))
        save_training_arguments(trainer, folder)
        teacher = getattr(trainer, "teacher_name", None)
        render_model_card(folder, repo_id=repo_id, teacher=teacher, world_size=trainer.args.world_size).save(
            folder / "README.md"
        )
    else:
        folder = Path(path_or_trainer)
        if not (folder / "config.json").exists():
            raise UsageError(f"{folder} holds no saved model (config.json); save the student there first.")
        if not (folder / "README.md").exists():
            render_model_card(folder, repo_id=repo_id).save(folder / "README.md")
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT"), token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            revision=revision,
            commit_message=commit_message or f"Upload distilled model from {folder.name}",
            allow_patterns=UPLOAD_PATTERNS,
            ignore_patterns=NEVER_UPLOADED,
        )
    # huggingface_hub raises HfHubHTTPError for an HTTP answer, OSError (OfflineModeIsEnabled) offline, and its
    # HTTP client's own transport errors when nothing answers: whatever the cause, nothing local was changed.
    except Exception as error:
        raise RunFailed(
            f"upload of {folder} to {repo_id} failed ({_reason(error)}); the folder is intact: "
            "call push_to_hub again, "
            f"or run python recipes/push_to_hub.py --model {folder} --repo_id {repo_id}"
        ) from None
    logger.info(f"pushed {folder} to {info.commit_url}")
    return info.commit_url


def _reason(error: Exception) -> str:
    """A short, token-free account of why an upload failed."""
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code}"
    if isinstance(error, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set"
    first_line = (str(error).strip().splitlines() or [""])[0][:120]
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
