"""Distil a fine-tuned teacher into a single-layer BiLSTM, as Tang et al. 2019 (arXiv:1903.12136), and measure it.

    python recipes/distil_bilstm.py                                    # offline: polarity demo, 5 seeds
    python recipes/distil_bilstm.py --task newsgroups --output_dir outputs/distil_bilstm/newsgroups
    python recipes/distil_bilstm.py --augmentations tang mlm unlabelled --labelled_fraction 0.5   # which helps
    python recipes/distil_bilstm.py --teacher outputs/ft/teacher-42     # a teacher fine-tuned by finetune.py
    python recipes/distil_bilstm.py --task mrpc --base_model bert-base-uncased   # GLUE from the Hub: pair encoder

Settings come from recipes/configs/distil_bilstm.yaml (or --config FILE), then from the flags, which win.

The story of a run, for each seed: fine-tune the teacher (unless --teacher) → a BiLSTM on the gold labels alone →
the teacher labels the training set (the transfer set) → a BiLSTM distilled from it (MSE to the teacher's logits
+ cross-entropy on the gold labels) → for each augmentation, the transfer set grows by augmented or unlabelled
text that the teacher labels, and another BiLSTM is distilled. Every BiLSTM gets the same number of updates.
Then: held-out scores over the seeds (mean ± sd), parameters, CPU time at batch 1 and 32 against the teacher,
results.json, the last seed's BiLSTM of the first augmentation saved with its tokenizer and model card, and the last
seed's teacher in runs/teacher.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import evaluate
import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.utils import logging

from hf_distil import TaskDistillationArguments, TaskDistillationTrainer, label_with_teacher
from hf_distil.callbacks import NonFiniteLossGuard, train_guarded
from hf_distil.cli import (
    check_output_dir,
    check_saved_model,
    mark_output_dir,
    parse_with_config,
    retry_from_the_shell,
    run_script,
    shipped_model_folder,
    task_splits,
)
from hf_distil.deploy import TASKS as EXPORT_TASKS
from hf_distil.deploy import describe_machine, export_onnx, latencies, onnx_runner, torch_runner
from hf_distil.errors import UsageError
from hf_distil.hub import BiLSTMCardReport, CpuTime, Score, push_to_hub, save_model_card
from hf_distil.models import bilstm_from_teacher, non_embedding_parameters
from hf_distil.tasks import (
    MAIN_METRIC,
    TASKS,
    PerceptronTagger,
    TangRates,
    encode_pairs,
    mlm_candidates,
    mlm_transfer_set,
    tang_transfer_set,
    words_of,
)
from hf_distil.tasks.metrics import metric_path
from hf_distil.teachers import DEFAULT_TEACHER, base_model_of, load_teacher, load_tokenizer

logger = logging.get_logger("distil_bilstm")
DEFAULT_CONFIG = Path(__file__).with_name("configs") / "distil_bilstm.yaml"
SCRIPT = "distil_bilstm.py"  # in the output folder's record
CLASSIFICATION_TASKS = tuple(t for t in TASKS if t != "squad")  # the BiLSTM classifies; SQuAD is extractive QA
AUGMENTATIONS = ("tang", "mlm", "unlabelled")
CLASSIFIER = EXPORT_TASKS["ForSequenceClassification"]
RESULTS_FILE = "results.json"  # what the run measured, beside the saved BiLSTM
# results.json's "speed" keys, "{prefix}_{batch size}", and the runtime each was timed in
SPEED_RUNTIMES = {"batch": "PyTorch fp32", "onnx_batch": "ONNX Runtime fp32"}
ROW_LABELS = {
    "teacher": "teacher (fine-tuned)",
    "gold": "BiLSTM, gold labels only",
    "distilled": "BiLSTM distilled, no augmentation",
    "distilled+tang": "BiLSTM distilled + Tang et al. rules",
    "distilled+mlm": "BiLSTM distilled + teacher MLM replacement",
    "distilled+unlabelled": "BiLSTM distilled + unlabelled in-domain text",
}


@dataclass
class BiLSTMRecipeArguments:
    teacher: str | None = field(
        default=None, metadata={"help": "A teacher already fine-tuned on the task (finetune.py); else one per seed."}
    )
    base_model: str = field(
        default="default-teacher",
        metadata={"help": "What the teacher is fine-tuned from when --teacher is not given."},
    )
    task: str = field(default="polarity", metadata={"help": f"One of {', '.join(CLASSIFICATION_TASKS)}."})
    train_file: str | None = field(default=None, metadata={"help": "Local CSV/JSON training file ('label' column)."})
    validation_file: str | None = field(
        default=None, metadata={"help": "Local evaluation file, same format; default: 20% of --train_file, held out."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated (teacher and BiLSTM)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only this many training examples."})
    seeds: list[int] = field(default_factory=lambda: [42, 43, 44, 45, 46], metadata={"help": "One run per seed."})
    augmentations: list[str] = field(
        default_factory=lambda: ["tang"],
        metadata={
            "help": "Transfer sets beyond the training set: tang (the paper's rules), mlm (TinyBERT's "
            "masked-LM replacement), unlabelled (in-domain text without labels)."
        },
    )
    n_iter: int = field(default=20, metadata={"help": "Augmented copies drawn per example (duplicates dropped)."})
    p_mask: float = field(default=0.1, metadata={"help": "tang: probability that a word becomes [MASK]."})
    p_pos: float = field(default=0.1, metadata={"help": "tang: probability of a same-POS word replacement."})
    p_ngram: float = field(default=0.25, metadata={"help": "tang: probability of keeping one n-gram, n in 1..5."})
    mlm_model: str = field(
        default="default-teacher", metadata={"help": "mlm: the masked LM that proposes words (the teacher's own)."}
    )
    mlm_top_k: int = field(default=15, metadata={"help": "mlm: candidates per word (TinyBERT's K)."})
    mlm_p_replace: float = field(default=0.4, metadata={"help": "mlm: probability that a word is replaced."})
    unlabelled_file: str | None = field(
        default=None, metadata={"help": "unlabelled: in-domain text, one per line, or CSV/JSON with the text columns."}
    )
    labelled_fraction: float = field(
        default=1.0,
        metadata={
            "help": "Keep the gold labels of only this fraction of the training set; the rest is unlabelled "
            "in-domain text (the offline demos have no other)."
        },
    )
    teacher_steps: int = field(default=100, metadata={"help": "Teacher fine-tuning: updates."})
    teacher_batch_size: int = field(default=16, metadata={"help": "Teacher fine-tuning: batch size."})
    teacher_learning_rate: float = field(default=1e-4, metadata={"help": "Teacher fine-tuning: learning rate."})
    hidden_size: int = field(default=150, metadata={"help": "BiLSTM units per direction."})
    classifier_size: int = field(default=200, metadata={"help": "Units of the BiLSTM's ReLU layer."})
    pooling: str = field(default="max", metadata={"help": "max (over the states) or last (final states)."})
    freeze_embeddings: bool = field(
        default=True,
        metadata={
            "help": "Keep the word embeddings (the teacher's) as they are: 0.7M trainable parameters instead "
            "of 12.4M, and no overfitting of rare words on a small task."
        },
    )
    threads: int | None = field(default=None, metadata={"help": "CPU threads for the timing (default: torch's)."})

    def __post_init__(self) -> None:
        if self.task not in CLASSIFICATION_TASKS:
            raise UsageError(
                f"--task {self.task}: not a classification task; choose one of {', '.join(CLASSIFICATION_TASKS)}."
            )
        unknown = set(self.augmentations) - set(AUGMENTATIONS)
        if unknown:
            raise UsageError(f"unknown augmentation(s) {sorted(unknown)}; choose from {', '.join(AUGMENTATIONS)}.")
        if not 0 < self.labelled_fraction <= 1:
            raise UsageError(f"labelled_fraction must be in (0, 1], got {self.labelled_fraction}.")
        if "unlabelled" in self.augmentations and self.labelled_fraction == 1 and not self.unlabelled_file:
            raise UsageError(
                "augmentation 'unlabelled' needs text: --unlabelled_file FILE or --labelled_fraction 0.5."
            )
        for name in ("teacher_steps", "n_iter", "hidden_size", "classifier_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} {getattr(self, name)}: must be at least 1.")
        if not self.seeds:
            raise UsageError("--seeds needs at least one seed.")
        TangRates(self.p_mask, self.p_pos, self.p_ngram)  # checks the rates now, not after the first teacher


def parse_arguments(argv: list[str]) -> tuple[BiLSTMRecipeArguments, TaskDistillationArguments]:
    """YAML values first (--config FILE, default recipes/configs/distil_bilstm.yaml), then the flags, which win."""
    return parse_with_config((BiLSTMRecipeArguments, TaskDistillationArguments), argv, DEFAULT_CONFIG)


def main() -> None:
    recipe, args = parse_arguments(sys.argv[1:])
    logging.set_verbosity(args.get_process_log_level())
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    out = Path(args.output_dir)

    # The output folder: new, empty or this recipe's own, never the folder of a model it reads.
    base = recipe.teacher or shipped_model_folder(recipe.base_model, "--base_model")
    sources = [("the teacher", recipe.teacher), ("the base model", base), ("the masked LM", recipe.mlm_model)]
    check_output_dir(args.output_dir, SCRIPT, sources=sources)
    check_saved_model(base, "--teacher" if recipe.teacher else "--base_model")

    # Data: the task's labelled training set (part of it when --labelled_fraction < 1), unlabelled text, held out
    # (without --validation_file, a share of --train_file that no model trains on).
    _, _, columns, num_labels, _ = TASKS[recipe.task]
    columns = [c for c in columns if c]
    train, held_out, held_out_name = task_splits(recipe.task, recipe.train_file, recipe.validation_file)
    if recipe.max_train_samples:
        train = train.select(range(min(recipe.max_train_samples, len(train))))
    train = train.shuffle(seed=0)  # the same labelled part for every seed
    labelled = train.select(range(max(1, round(recipe.labelled_fraction * len(train)))))
    rest = train[len(labelled) :]  # {column: values}
    unlabelled = list(zip(*(rest[c] for c in columns)))
    unlabelled += read_unlabelled(recipe.unlabelled_file, columns) if recipe.unlabelled_file else []

    # Tokenizer: the teacher's, which the BiLSTM shares.
    tokenizer = load_tokenizer(base, "--teacher" if recipe.teacher else "--base_model")
    collator = DataCollatorWithPadding(tokenizer)

    def tokenise(rows: datasets.Dataset) -> datasets.Dataset:
        return rows.map(
            encode_pairs,
            batched=True,
            remove_columns=[c for c in rows.column_names if c != "label"],
            fn_kwargs=dict(tokenizer=tokenizer, columns=(*columns, None)[:2], max_length=recipe.max_seq_length),
        )

    gold, held_out = tokenise(labelled), tokenise(held_out)

    # What the augmentations need once: words, their POS tags, the masked LM's proposals.
    words = [[words_of(row[c]) for c in columns] for row in labelled]
    tags = None
    if "tang" in recipe.augmentations:
        tagger = PerceptronTagger.load()
        tags = [[tagger.tag(w) for w in example] for example in words]
    candidates = None
    if "mlm" in recipe.augmentations:
        mlm = load_teacher(shipped_model_folder(recipe.mlm_model, "--mlm_model"), "--mlm_model")
        flat = mlm_candidates(
            mlm, tokenizer, [w for example in words for w in example], recipe.mlm_top_k, recipe.max_seq_length
        )
        candidates = [flat[i * len(columns) : (i + 1) * len(columns)] for i in range(len(words))]
        del mlm

    metric_name = MAIN_METRIC.get(recipe.task, "accuracy")
    metric = evaluate.load(metric_path("glue_like"), recipe.task if recipe.task in MAIN_METRIC else "accuracy")

    def compute_metrics(prediction) -> dict:
        logits, labels = prediction
        predictions = logits.squeeze(-1) if num_labels == 1 else np.argmax(logits, axis=-1)
        return metric.compute(predictions=predictions, references=labels)

    def score(model: PreTrainedModel, run_args: TrainingArguments, guard: NonFiniteLossGuard) -> float:
        """The held-out score; a model whose held-out loss is NaN/Inf (diverged yet finite) fails the run."""
        trainer = Trainer(model=model, args=run_args, data_collator=collator, compute_metrics=compute_metrics)
        metrics = trainer.evaluate(held_out)
        guard.raise_if_failed(out, metrics["eval_loss"])
        return round(100 * metrics[f"eval_{metric_name}"], 2)

    rows = ["teacher", "gold", "distilled", *(f"distilled+{a}" for a in recipe.augmentations)]
    kept_row = rows[3] if len(rows) > 3 else rows[2]  # the BiLSTM that is timed, saved and published
    scores: dict[str, dict[str, float]] = {row: {} for row in rows}
    sizes: dict[str, int] = {}
    mark_output_dir(args.output_dir, SCRIPT)
    for seed in recipe.seeds:
        set_seed(seed)
        run_args = dataclasses.replace(args, seed=seed, output_dir=str(out / "runs" / f"seed-{seed}"))

        # The teacher, fine-tuned on the labelled examples (or given).
        if recipe.teacher:
            teacher = load_teacher(recipe.teacher, "--teacher", auto_class=AutoModelForSequenceClassification)
            guard = NonFiniteLossGuard()
        else:
            teacher, guard = fine_tune_teacher(base, num_labels, gold, collator, recipe, run_args)
        scores["teacher"][str(seed)] = score(teacher, run_args, guard)

        # A BiLSTM on the gold labels alone, then distilled on the teacher-labelled transfer sets.
        transfer = label_with_teacher(teacher, gold, collator)
        for row in rows[1:]:
            set_seed(seed)
            student = bilstm_from_teacher(
                teacher,
                num_labels,
                hidden_size=recipe.hidden_size,
                classifier_size=recipe.classifier_size,
                pooling=recipe.pooling,
                pair_encoder=len(columns) == 2,
            )
            student.embeddings.requires_grad_(not recipe.freeze_embeddings)
            if row == "gold":
                trainer = Trainer(model=student, args=run_args, train_dataset=gold, data_collator=collator)
            else:
                how = row.partition("+")[2]
                extra = augmented(how, words, tags, candidates, unlabelled, recipe, seed, tokenizer.mask_token)
                train_set = transfer
                if extra:
                    texts = datasets.Dataset.from_dict(
                        {c: [e[i] for e in extra] for i, c in enumerate(columns)} | {"label": [-100] * len(extra)}
                    )
                    train_set = datasets.concatenate_datasets(
                        [transfer, label_with_teacher(teacher, tokenise(texts), collator)]
                    )
                sizes[row] = len(train_set)
                trainer = TaskDistillationTrainer(
                    model=student, teacher_model=None, args=run_args, train_dataset=train_set, data_collator=collator
                )
            _, guard = train_guarded(trainer)
            scores[row][str(seed)] = score(student, run_args, guard)
            logger.info(f"seed {seed} {row}: {scores[row][str(seed)]}")
            if row == kept_row:
                kept = student
        out.mkdir(parents=True, exist_ok=True)  # the seeds so far: a long run that stops keeps them
        summary = summarise(recipe, args, scores, sizes, kept_row, teacher, kept, held_out_name)
        (out / RESULTS_FILE).write_text(json.dumps(summary))

    # Size and CPU time of the last seed's teacher and BiLSTM, at batch 1 and 32, on the held-out examples.
    results = summarise(recipe, args, scores, sizes, kept_row, teacher, kept, held_out_name)
    results["speed"] = cpu_time(teacher, kept, tokenizer, held_out, collator)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))

    # The last seed's teacher, for --teacher next time and recipes/export.py --teacher (runs/ is never uploaded).
    if not recipe.teacher:
        teacher.save_pretrained(out / "runs" / "teacher")
        tokenizer.save_pretrained(out / "runs" / "teacher")

    # The last seed's BiLSTM of the first augmentation, its tokenizer and card; published with --push_to_hub.
    kept.save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_model_card(card_report(results, kept), out, args.hub_model_id)
    print(f"BiLSTM written to {out.resolve()}: model.safetensors, config.json, tokenizer, README.md, {RESULTS_FILE}")
    if args.push_to_hub:
        retry = ["python", "recipes/push_to_hub.py", "--model", str(out), "--repo_id", args.hub_model_id]
        with retry_from_the_shell(retry):
            push_to_hub(out, args.hub_model_id)


def summarise(
    recipe: BiLSTMRecipeArguments,
    args: TaskDistillationArguments,
    scores: dict[str, dict[str, float]],
    sizes: dict[str, int],
    kept_row: str,
    teacher: PreTrainedModel,
    kept: PreTrainedModel,
    held_out: str,
) -> dict:
    """What results.json holds: the scores of the seeds run so far on the held-out set (`held_out` says which), their
    mean ± sd and the gap closed, the sizes and the settings (the CPU time is added at the end)."""
    rows = [row for row in scores if scores[row]]
    return {
        "task": recipe.task,
        "teacher": recipe.teacher
        or (DEFAULT_TEACHER if recipe.base_model == "default-teacher" else recipe.base_model),
        "metric": MAIN_METRIC.get(recipe.task, "accuracy"),
        "held_out": held_out,
        "seeds": [int(seed) for seed in scores["teacher"]],
        "rows": {
            row: {"label": ROW_LABELS[row], "scores": scores[row], **mean_sd(scores[row]), "examples": sizes.get(row)}
            for row in rows
        },
        "kept": kept_row,
        "gap_closed": gap_closed(scores, rows),
        "params": {
            "teacher": teacher.num_parameters(),
            "teacher_non_embedding": non_embedding_parameters(teacher),
            "bilstm": kept.num_parameters(),
            "bilstm_non_embedding": non_embedding_parameters(kept),
        },
        "settings": {
            "recipe": dataclasses.asdict(recipe),
            "bilstm_updates": args.max_steps,
            "bilstm_batch_size": args.per_device_train_batch_size,
            "learning_rate": args.learning_rate,
            "kd_loss": args.kd_loss,
            "alpha_task": args.alpha_task,
            "alpha_kd": args.alpha_kd,
        },
        "machine": describe_machine(),
        "load_average": os.getloadavg()[0],
    }


def card_report(results: dict, bilstm: PreTrainedModel) -> BiLSTMCardReport:
    """The BiLSTM's model card: its shape from its config, the rest from what the run measured (results.json)."""
    kept, speed, params = results["rows"][results["kept"]], results["speed"], results["params"]
    return BiLSTMCardReport(
        teacher=results["teacher"],
        base_model=base_model_of(results["teacher"]),
        hidden_size=bilstm.config.hidden_size,
        classifier_size=bilstm.config.classifier_size,
        max_pooling=bilstm.config.pooling == "max",
        pair_encoder=bilstm.config.pair_encoder,
        kd_loss=results["settings"]["kd_loss"],
        gold_labels=results["settings"]["alpha_task"] > 0,
        transfer_examples=kept["examples"],
        augmentation=kept["label"].split("distilled")[-1].strip() or None,
        task=results["task"],
        metric=results["metric"],
        seeds=len(results["seeds"]),
        scores=[Score(row["label"], row["mean"], row["sd"]) for row in results["rows"].values()],
        teacher_parameters=params["teacher"],
        student_parameters=params["bilstm"],
        teacher_non_embedding=params["teacher_non_embedding"],
        student_non_embedding=params["bilstm_non_embedding"],
        cpu_times=[
            CpuTime(runtime, size, speed["threads"], speed[key]["teacher_ms"], speed[key]["bilstm_ms"])
            for prefix, runtime in SPEED_RUNTIMES.items()
            for size in (1, 32)
            if (key := f"{prefix}_{size}") in speed
        ],
    )


def fine_tune_teacher(
    base: str,
    num_labels: int,
    gold: datasets.Dataset,
    collator: DataCollatorWithPadding,
    recipe: BiLSTMRecipeArguments,
    run_args: TrainingArguments,
) -> tuple[PreTrainedModel, NonFiniteLossGuard]:
    """The teacher: `base` with a new classification head, fine-tuned on the labelled examples as finetune.py does
    (its README settings: 100 updates of 16, learning rate 1e-4); with the guard that watched its training."""
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=num_labels)
    teacher_args = TrainingArguments(
        output_dir=str(Path(run_args.output_dir) / "teacher"),
        max_steps=recipe.teacher_steps,
        per_device_train_batch_size=recipe.teacher_batch_size,
        learning_rate=recipe.teacher_learning_rate,
        seed=run_args.seed,
        use_cpu=run_args.use_cpu,
        save_strategy="no",
        report_to="none",
        logging_steps=max(1, recipe.teacher_steps // 5),
        disable_tqdm=run_args.disable_tqdm,
    )
    _, guard = train_guarded(Trainer(model=model, args=teacher_args, train_dataset=gold, data_collator=collator))
    return model.eval(), guard


def augmented(
    how: str,
    words: list[list[list[str]]],
    tags: list[list[list[str]]] | None,
    candidates: list | None,
    unlabelled: list[tuple[str, ...]],
    recipe: BiLSTMRecipeArguments,
    seed: int,
    mask_token: str,
) -> list[tuple[str, ...]]:
    """The texts that join the transfer set for one row of the table (none for plain distillation)."""
    if how == "tang":
        rates = TangRates(recipe.p_mask, recipe.p_pos, recipe.p_ngram)
        return tang_transfer_set(words, tags, recipe.n_iter, seed, rates, mask_token)
    if how == "mlm":
        return mlm_transfer_set(words, candidates, recipe.n_iter, seed, recipe.mlm_p_replace)
    return unlabelled if how == "unlabelled" else []


def read_unlabelled(path: str, columns: list[str]) -> list[tuple[str, ...]]:
    """Text without labels: one text per line (single-text tasks), or CSV/JSON with the task's text columns."""
    if not Path(path).is_file():
        raise UsageError(f"--unlabelled_file {path}: no such file.")
    if path.endswith((".csv", ".json", ".jsonl")):
        rows = datasets.load_dataset("csv" if path.endswith(".csv") else "json", data_files=path)["train"]
        missing = [c for c in columns if c not in rows.column_names]
        if missing:
            raise UsageError(
                f"--unlabelled_file {path}: no column {', '.join(missing)}; it needs {', '.join(columns)}."
            )
        return [tuple(row[c] for c in columns) for row in rows]
    if len(columns) > 1:
        raise UsageError(f"--unlabelled_file {path}: a sentence-pair task needs CSV/JSON with {', '.join(columns)}.")
    return [(line.strip(),) for line in Path(path).read_text().splitlines() if line.strip()]


def cpu_time(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    held_out: datasets.Dataset,
    collator: DataCollatorWithPadding,
) -> dict:
    """Milliseconds per held-out example of each model at batch 1 and 32 (median of 5 passes), in PyTorch fp32 and,
    when the export extra is installed, in ONNX Runtime fp32, the runtime the BiLSTM ships in (recipes/export.py).
    All four take turns within each pass; each speed-up is the teacher's time over the BiLSTM's in one runtime."""
    examples = [{k: v for k, v in row.items() if k != "label"} for row in held_out]
    result: dict = {"threads": torch.get_num_threads(), "examples": len(examples)}
    models = {"teacher": teacher, "bilstm": student}
    runners = {("batch", name): torch_runner(model) for name, model in models.items()}  # keys: SPEED_RUNTIMES
    with tempfile.TemporaryDirectory() as folder:
        if importlib.util.find_spec("onnxruntime"):
            for name, model in models.items():
                path = export_onnx(model, tokenizer, Path(folder, f"{name}.onnx"), CLASSIFIER)
                runners["onnx_batch", name] = onnx_runner(path)
        else:
            logger.info("onnxruntime is not installed (pip install hf_distil[export]): PyTorch times only")
        for size in (1, 32):
            batches = [
                {k: v.numpy() for k, v in collator(examples[i : i + size]).items()}
                for i in range(0, len(examples), size)
            ]
            ms = latencies(runners, batches, rounds=5)
            for key in dict.fromkeys(key for key, _ in runners):
                teacher_ms, bilstm_ms = (ms[key, name] * len(batches) / len(examples) for name in models)
                speedup = teacher_ms / bilstm_ms
                result[f"{key}_{size}"] = {"teacher_ms": teacher_ms, "bilstm_ms": bilstm_ms, "speedup": speedup}
    return result


def mean_sd(scores: dict[str, float]) -> dict[str, float]:
    values = list(scores.values())
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def gap_closed(scores: dict[str, dict[str, float]], rows: list[str]) -> dict[str, float | None]:
    """How much of the gap between the gold-label BiLSTM and the teacher each distilled BiLSTM closes (1 = all),
    from the means over seeds; None when the BiLSTM on gold labels is already as good as the teacher."""
    teacher, gold = np.mean(list(scores["teacher"].values())), np.mean(list(scores["gold"].values()))
    if teacher <= gold:
        return {row: None for row in rows[2:]}
    return {row: float((np.mean(list(scores[row].values())) - gold) / (teacher - gold)) for row in rows[2:]}


def format_table(results: dict) -> str:
    p, speed = results["params"], results["speed"]
    seeds = len(results["seeds"])
    lines = [
        f"{results['task']}: held-out {results['metric']} over {seeds} seed(s) (mean ± sd), per seed, "
        "and the share of the gold-label BiLSTM's gap to the teacher closed",
    ]
    for row, r in results["rows"].items():
        closed = results["gap_closed"].get(row)
        per_seed = " / ".join(f"{v:.1f}" for v in r["scores"].values())
        gap = f"   gap closed {closed:+.0%}" if closed is not None else ""
        lines.append(f"  {r['label']:<46}{r['mean']:6.2f} ± {r['sd']:5.2f}   {per_seed}{gap}")
    lines.append(
        f"parameters: teacher {p['teacher'] / 1e6:.1f}M ({p['teacher_non_embedding'] / 1e6:.2f}M outside the word "
        f"embeddings), BiLSTM {p['bilstm'] / 1e6:.1f}M ({p['bilstm_non_embedding'] / 1e6:.2f}M)"
    )
    for key, runtime in SPEED_RUNTIMES.items():
        for size in (1, 32):
            if f"{key}_{size}" in speed:
                s = speed[f"{key}_{size}"]
                lines.append(
                    f"CPU time per example in {runtime}, batch {size} ({speed['threads']} threads): teacher "
                    f"{s['teacher_ms']:.2f} ms, BiLSTM {s['bilstm_ms']:.2f} ms: {s['speedup']:.1f}x faster"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    run_script(main)
