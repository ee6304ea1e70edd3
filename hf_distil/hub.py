"""Publishing: the model card of a distilled model, and `push_to_hub` (safetensors only, never pickles)."""

from __future__ import annotations

import importlib.resources
import json
import os
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.errors import HfHubHTTPError
from transformers import Trainer
from transformers.utils import logging

logger = logging.get_logger(__name__)

TEMPLATE = "distilled_model.md"
# What reaches the Hub: weights as safetensors, configs, tokenizer, card, plot, metrics, arguments.
UPLOAD_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.md", "*.png", "*.model"]
NEVER_UPLOADED = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "checkpoint-*/*", "runs/*"]
RESULTS_FILE = "held_out_results.json"
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


def render_model_card(
    folder: str | Path,
    repo_id: str | None = None,
    teacher: str | None = None,
    datasets: list[str] | None = None,
    license: str = "apache-2.0",
    base_model: str | None = None,
) -> ModelCard:
    """Build the card of a saved student from what its folder holds.

    Reads config.json, training_args.json, trainer_state.json (loss curve and steps), and
    held_out_results.json (written by recipes/distil_bert.py); writes loss_terms.png beside them.
    base_model defaults to the teacher when that is a Hub id.
    """
    folder = Path(folder)
    config = _read_json(folder / "config.json")
    args = _read_json(folder / ARGS_FILE)
    state = _read_json(folder / "trainer_state.json")
    results = _read_json(folder / RESULTS_FILE)
    teacher = teacher or results.get("teacher_name") or "unknown teacher"
    repo_id = repo_id or folder.name
    plot_loss_terms(state.get("log_history", []), folder / "loss_terms.png")

    eval_results, eval_rows = [], []
    student_metrics, teacher_metrics = results.get("student", {}), results.get("teacher", {})
    dataset_name = (datasets or [results.get("eval_dataset", "held-out text")])[0]
    for key, label, scale in (
        ("accuracy", "top-1 accuracy at [MASK] (%)", 100),
        ("top5_accuracy", "top-5 accuracy at [MASK] (%)", 100),
        ("perplexity", "MLM perplexity", 1),
        ("teacher_agreement", "top-1 agreement with the teacher (%)", 100),
    ):
        if key in student_metrics:
            value = round(student_metrics[key] * scale, 2)
            eval_rows.append((label, f"{teacher_metrics[key] * scale:.2f}" if key in teacher_metrics else "—", f"{value:.2f}"))
            eval_results.append(EvalResult(task_type="fill-mask", dataset_type=dataset_name, dataset_name=dataset_name, metric_type=key, metric_value=value))

    card_data = ModelCardData(
        base_model=base_model or results.get("base_model") or _hub_id(teacher),
        tags=["distillation", "distilbert", "fill-mask", "hf_distil"],
        datasets=datasets,
        license=license,
        pipeline_tag="fill-mask",
        model_name=repo_id,
        eval_results=eval_results or None,
    )
    layers = config.get("n_layers", config.get("num_hidden_layers", "?"))
    effective_batch = args.get("per_device_train_batch_size", 0) * args.get("gradient_accumulation_steps", 1) * results.get("world_size", 1)
    recipe = [
        ("loss weights (ce / mlm / cos / mse)", " / ".join(str(args.get(f"alpha_{t}", "?")) for t in ("ce", "mlm", "cos", "mse"))),
        ("temperature", args.get("temperature", "?")),
        ("soft targets at", "masked tokens" if args.get("restrict_ce_to_mask") else "every non-pad token"),
        ("layer map (teacher layers kept)", results.get("layer_map", "?")),
        ("masking", f"{args.get('mlm_probability', '?')} of tokens; {args.get('mask_replace_prob', '?')} [MASK] / "
                    f"{args.get('random_replace_prob', '?')} random; smoothing {args.get('mlm_smoothing', '?')}"),
        ("effective batch (sequences per update)", effective_batch),
        ("optimizer steps", state.get("global_step", "?")),
        ("learning rate", args.get("learning_rate", "?")),
        ("hardware", results.get("hardware", "?")),
        ("wall time (s)", results.get("train_seconds", "?")),
    ]
    speed = results.get("speed_batch_1", {})
    params = results.get("params", {})
    sentences = max(results.get("speed_sentences", 1), 1)
    return ModelCard.from_template(
        card_data,
        template_str=importlib.resources.files("hf_distil.model_cards").joinpath(TEMPLATE).read_text(),
        model_name=repo_id,
        repo_id=repo_id,
        teacher=teacher,
        teacher_link=f"[{teacher}](https://huggingface.co/{card_data.base_model})" if card_data.base_model else f"`{teacher}`",
        layer_map=results.get("layer_map", "?"),
        student_layers=layers,
        teacher_layers=results.get("teacher_layers", "?"),
        teacher_params=f"{params.get('teacher', 0) / 1e6:.1f}M",
        student_params=f"{params.get('student', 0) / 1e6:.1f}M",
        teacher_seconds=f"{speed.get('teacher_seconds', float('nan')) / sentences * 1e3:.1f} ms",
        student_seconds=f"{speed.get('student_seconds', float('nan')) / sentences * 1e3:.1f} ms",
        speedup=f"{speed.get('speedup', float('nan')):.2f}",
        speed_hardware=results.get("hardware", "?"),
        eval_rows=eval_rows,
        recipe=recipe,
    )


def push_to_hub(
    path_or_trainer: str | Path | Trainer,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a saved student (or a Trainer's output) with its card; returns the commit URL.

    Honours HF_ENDPOINT (read at call time) for private Hub deployments. Only safetensors weights leave
    the machine. Nothing local is changed by a failed upload, so the same call can simply be repeated.
    """
    if isinstance(path_or_trainer, Trainer):
        trainer = path_or_trainer
        folder = Path(trainer.args.output_dir)
        trainer.save_model(str(folder))
        trainer.state.save_to_json(str(folder / "trainer_state.json"))
        save_training_arguments(trainer, folder)
    else:
        folder = Path(path_or_trainer)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} holds no saved model (config.json); save the student there first.")
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
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "no response"
        raise RuntimeError(
            f"upload of {folder} to {repo_id} failed (HTTP {status}); the folder is intact: call push_to_hub again to retry"
        ) from None
    logger.info(f"pushed {folder} to {info.commit_url}")
    return info.commit_url
