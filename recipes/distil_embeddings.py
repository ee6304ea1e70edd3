"""Distil a sentence-embedding model (Sentence Transformers) into a shallower student on its pooled embeddings.

    accelerate launch -q recipes/distil_embeddings.py    # offline default: under 10 minutes on 2 CPU cores
    accelerate launch --config_file ds_configs/multi_gpu.yaml recipes/distil_embeddings.py \\
        --teacher sentence-transformers/all-mpnet-base-v2 --train_file sentences.txt --output_dir outputs/mpnet-3

Settings come from a YAML file (`--config`, default `recipes/configs/distil_embeddings.yaml`), then from the
command line, which wins. Every option: `python recipes/distil_embeddings.py --help`.

The story of a run: arguments → logging → output folder check → seed → teacher, its tokenizer, pooling and input
length (from its Sentence Transformers folder) → sentences (never the evaluation's documents) → student (extracted
from the teacher's layers, --vocabulary_size trimming it, or given) and a copy of it left undistilled →
DistillationTrainer with the pooled terms, each model reading the text with its own tokenizer →
train (resuming this run's own last checkpoint) → save in the Sentence Transformers layout → evaluate on human
similarity ratings (Lee et al. 2005: teacher, distilled student, undistilled student, model2vec's static
embeddings) and against the teacher on held-out sentences, and time both at batch 1 → summary table → model card →
push to the Hub (--push_to_hub --hub_model_id NAME).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase, set_seed
from transformers.utils import logging

from hf_distil import (
    DistillationArguments,
    DistillationTrainer,
    count_parameters,
    init_student_from_teacher,
    push_to_hub,
    trim_vocabulary,
)
from hf_distil.callbacks import NonFiniteLossGuard
from hf_distil.cli import (
    ModelArguments,
    check_corpus_dataset,
    check_output_dir,
    check_saved_model,
    mark_output_dir,
    parse_with_config,
    retry_from_the_shell,
    run_script,
)
from hf_distil.data import DataArguments, SentenceCollator, same_tokenization, sentence_splits
from hf_distil.errors import UsageError
from hf_distil.evaluation import (
    describe_hardware,
    encoder,
    lee_similarity,
    teacher_agreement,
    time_models,
    whole_model,
)
from hf_distil.hub import (
    EMBEDDING_STUDENT_LABEL,
    EmbeddingCardReport,
    Similarity,
    Speed,
    describe_speedup,
    save_model_card,
    save_training_arguments,
)
from hf_distil.models import (
    Pooling,
    folder_max_seq_length,
    save_sentence_transformers_layout,
    sentence_transformers_folder,
)
from hf_distil.run_folder import RUN_SETTINGS_FILE, resume_point
from hf_distil.teachers import base_model_of, load_teacher, load_tokenizer, minilm, packaged_encoder_path

logger = logging.get_logger("distil_embeddings")
DEFAULT_CONFIG = Path(__file__).with_name("configs") / "distil_embeddings.yaml"
SCRIPT = "distil_embeddings.py"  # in the output folder's record
RESULTS_FILE = "embedding_results.json"
LEE = "Lee, Pincombe & Welsh (2005), 50 news documents, 1,225 rated pairs"


@dataclass
class EmbeddingArguments:
    """What the evaluation of an embedding distillation measures (this recipe's own settings)."""

    static_baseline: bool = field(
        default=True,
        metadata={
            "help": "Also score static embeddings distilled from the teacher by model2vec (distill_from_model; needs "
            "model2vec and skeletoken, 1-2 minutes on 2 CPU cores); the table says why when it cannot run."
        },
    )
    agreement_sentences: int = field(
        default=1000, metadata={"help": "Held-out sentences on which the student is compared with the teacher."}
    )
    speed_sentences: int = field(default=100, metadata={"help": "Held-out sentences timed one at a time."})


def parse_arguments(
    argv: list[str],
) -> tuple[ModelArguments, DataArguments, DistillationArguments, EmbeddingArguments]:
    """YAML values first (--config FILE, default recipes/configs/distil_embeddings.yaml), then the flags, which win."""
    classes = (ModelArguments, DataArguments, DistillationArguments, EmbeddingArguments)
    return parse_with_config(classes, argv, DEFAULT_CONFIG)


def main() -> None:
    model_args, data_args, args, eval_args = parse_arguments(sys.argv[1:])

    # Logging: info on the main process, warnings elsewhere.
    logging.set_verbosity(args.get_process_log_level())
    logger.info(f"model {model_args}\ndata {data_args}\nevaluation {eval_args}")

    # One teacher, and a student the teacher's class can be cut into: checked before anything loads.
    if model_args.teacher and len(model_args.teacher) > 1:
        raise UsageError(
            f"--teacher {' '.join(model_args.teacher)}: an embedding student learns from one teacher's embeddings; "
            "pass one."
        )
    if not model_args.student and model_args.student_architecture not in ("same", "distilbert"):
        raise UsageError(
            f"--student_architecture {model_args.student_architecture}: an embedder's student is cut from the "
            "teacher's layers; pass --student_architecture same (the teacher's class) or distilbert (a "
            "DistilBertModel, BERT teachers), or a ready --student."
        )

    # The output folder: new, empty or this recipe's own, never where a model comes from.
    teacher_name = model_args.teacher[0] if model_args.teacher else None
    check_output_dir(
        args.output_dir,
        SCRIPT,
        sources=[("the teacher", teacher_name), ("the student", model_args.student)],
        records=(RUN_SETTINGS_FILE, f"checkpoint-*/{RUN_SETTINGS_FILE}"),
        overwrite=args.overwrite_output_dir,
    )
    if model_args.student:
        check_saved_model(model_args.student, "--student")
    check_corpus_dataset(data_args)
    set_seed(args.seed)

    # Teacher: a plain encoder (AutoModel) with its tokenizer; its pooling and input length come from its Sentence
    # Transformers files (in its folder, or in its Hub repo), so the student learns the embeddings its users get.
    if teacher_name is None:
        logger.info(f"no --teacher given: using the packaged {minilm.BASE_MODEL} (offline)")
    source = teacher_name or str(packaged_encoder_path())
    teacher = load_teacher(source, auto_class=AutoModel).eval()
    tokenizer = load_tokenizer(source)
    try:
        folder = sentence_transformers_folder(source)
    except OSError as error:  # the Hub refused or could not be reached
        reason = " ".join(str(error).split())[:200]  # Hub errors span several lines
        raise UsageError(f"--teacher {source}: its Sentence Transformers files cannot be read ({reason}).") from None
    pooling = Pooling.from_folder(folder) if folder else None
    if pooling is None:
        pooling = Pooling("mean", normalize=True)
        logger.warning(
            f"{source} has no Sentence Transformers modules.json (in its folder, on the Hub or in the Hub cache): "
            f"pooling {describe_pooling(pooling)}, the common default"
        )
    max_seq_length = (folder_max_seq_length(folder) if folder else None) or min(
        tokenizer.model_max_length, teacher.config.max_position_embeddings
    )

    # Sentences: the user's texts, or the offline corpora's sentences (never the rated documents).
    with args.main_process_first(desc="sentences"):
        splits = sentence_splits(data_args)

    # Student: taken from the teacher's layers (DistilBERT's initialisation) unless one is given, its vocabulary
    # trimmed to the training sentences' N tokens with --vocabulary_size; a copy stays undistilled, to show what the
    # training adds.
    if model_args.student:
        student = load_teacher(model_args.student, "--student", auto_class=AutoModel)
        student_tokenizer = load_tokenizer(model_args.student, "--student")
    else:
        student = init_student_from_teacher(
            teacher, model_args.student_layers, model_args.student_num_layers, model_args.student_architecture
        )
        if model_args.random_init_student:
            student = type(student)(student.config)
        student_tokenizer = tokenizer
        if model_args.vocabulary_size:
            student, student_tokenizer, _ = trim_vocabulary(
                student, tokenizer, splits["train"]["text"], model_args.vocabulary_size
            )
    undistilled = copy.deepcopy(student).eval()

    # Train on the pooled terms: each model reads the text with its own tokenizer, cut at --max_seq_length tokens.
    guard = NonFiniteLossGuard()
    teacher_tokenizer = None if same_tokenization(student_tokenizer, tokenizer) else tokenizer
    length = data_args.max_seq_length
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=args,
        train_dataset=splits["train"],
        data_collator=SentenceCollator(student_tokenizer, teacher_tokenizer, length, length),
        processing_class=student_tokenizer,
        teacher_processing_class=teacher_tokenizer,
        pooling=pooling,
        callbacks=[guard],
    )
    origin = ("student", "student_layers", "student_num_layers", "random_init_student", "vocabulary_size")
    trainer.run_settings.update({name: getattr(model_args, name) for name in origin})
    with args.main_process_first(desc="output folder check"):
        checkpoint = resume_point(args, trainer.run_settings)
    if checkpoint:
        logger.warning(f"resuming from {checkpoint}; --overwrite_output_dir or another --output_dir starts afresh")
    elif args.should_save:
        mark_output_dir(args.output_dir, SCRIPT)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    guard.raise_if_failed(args.output_dir)  # stopped, or ended on NaN/Inf gradients: no model, card or push
    train_seconds = time.time() - started
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    save_training_arguments(trainer.args, args.output_dir)  # JSON: Trainer's own copy is a pickle, never uploaded

    # Save in the Sentence Transformers layout: the model and tokenizer, then the modules around them.
    # Every process takes part (under ZeRO-3 the weights are gathered); the evaluation needs whole models in one
    # process (under ZeRO-3 and FSDP2, copies from the gathered shards).
    # (_internal_call: with --push_to_hub, Trainer's save_model would publish now, before the layout and the card.)
    trainer.save_model(args.output_dir, _internal_call=True)
    student = whole_model(trainer.accelerator.unwrap_model(trainer.model)).eval()
    teacher = whole_model(teacher)
    if trainer.is_world_process_zero():
        save_sentence_transformers_layout(args.output_dir, trainer.pooling, student.config.hidden_size, max_seq_length)

        # Evaluate: human similarity ratings, agreement with the teacher, speed at batch 1.
        def encode(model: PreTrainedModel, model_tokenizer: PreTrainedTokenizerBase):
            return encoder(model, model_tokenizer, trainer.pooling, max_length=max_seq_length)

        similarity = [
            Similarity("teacher", **lee_similarity(encode(teacher, tokenizer))),
            Similarity(EMBEDDING_STUDENT_LABEL, **lee_similarity(encode(student, student_tokenizer))),
            Similarity("student before distillation", **lee_similarity(encode(undistilled, student_tokenizer))),
        ]
        if eval_args.static_baseline:
            similarity.append(static_baseline(teacher, tokenizer))
        held_out = splits["test"]["text"][: eval_args.agreement_sentences]
        agreement = teacher_agreement(
            encode(student, student_tokenizer)(held_out), encode(teacher, tokenizer)(held_out)
        )
        speed = batch_1_seconds(
            (teacher, tokenizer), (student, student_tokenizer), held_out[: eval_args.speed_sentences], max_seq_length
        )
        results = {
            "teacher": source,
            "lee": [dataclasses.asdict(s) for s in similarity],
            "agreement": {**agreement, "sentences": len(held_out)},
            "speed_batch_1": speed,
            "params": {"teacher": count_parameters(teacher), "student": count_parameters(student)},
            "hardware": describe_hardware(),
            "train_seconds": round(train_seconds, 1),
            "optimizer_steps": trainer.state.global_step,
        }
        Path(args.output_dir, RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
        print_summary(similarity, agreement, len(held_out), speed)

        # The card: what the trainer knows, and what this run measured.
        trained = trainer.card_report()
        card = EmbeddingCardReport(
            **{f.name: getattr(trained, f.name) for f in dataclasses.fields(trained)},
            pooling=describe_pooling(trainer.pooling),
            max_seq_length=max_seq_length,
            similarity_dataset=LEE,
            similarity=similarity,
            agreement_sentences=len(held_out),
            mean_cosine=agreement["mean_cosine"],
            neighbour_agreement=agreement["neighbour_agreement"],
        )
        card = dataclasses.replace(
            card,
            teacher=teacher_name or minilm.BASE_MODEL,
            base_model=base_model_of(teacher_name) if teacher_name else minilm.BASE_MODEL,
            teacher_layers=teacher.config.num_hidden_layers,
            teacher_parameters=count_parameters(teacher),
            # masked-LM settings: not part of this training
            temperature=None,
            restrict_ce_to_mask=None,
            masking=None,
            speed=Speed(
                speed["sentences"],
                encoder_teacher_seconds=speed["teacher_seconds"],
                encoder_student_seconds=speed["student_seconds"],
            ),
            hardware=results["hardware"],
            train_seconds=results["train_seconds"],
        )
        save_model_card(card, args.output_dir, args.hub_model_id)
        print(
            f"student written to {Path(args.output_dir).resolve()} in the Sentence Transformers layout (load with "
            f"SentenceTransformer(folder)), README.md (model card), {RESULTS_FILE}"
        )
        if args.push_to_hub:
            retry = ["python", "recipes/push_to_hub.py", "--model", args.output_dir, "--repo_id", args.hub_model_id]
            with retry_from_the_shell(retry):
                url = push_to_hub(
                    args.output_dir,
                    args.hub_model_id,
                    private=bool(args.hub_private_repo),
                    token=args.hub_token,
                    revision=args.hub_revision,
                )
            print(f"published: {url}")

    # Every process waits for the others, then the process group is closed (as distil_bert.py).
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


def static_baseline(teacher: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> Similarity:
    """model2vec's static embeddings distilled from the teacher (Lee scores), the kind users pick for speed; a row
    that says why when model2vec's distillation is not installed or fails."""
    label = "model2vec static (distill_from_model)"
    try:
        from model2vec.distill import distill_from_model
    except ImportError as error:
        return Similarity(label, note=f"not run: {' '.join(str(error).split())[:120]}")
    try:
        static = distill_from_model(model=teacher, tokenizer=tokenizer, pca_dims=256)
    except (OSError, RuntimeError, ValueError) as error:  # e.g. a download it attempts while offline
        return Similarity(label, note=f"failed: {type(error).__name__}: {' '.join(str(error).split())[:120]}")
    return Similarity(label, **lee_similarity(static.encode))


def batch_1_seconds(
    teacher: tuple[PreTrainedModel, PreTrainedTokenizerBase],
    student: tuple[PreTrainedModel, PreTrainedTokenizerBase],
    sentences: list[str],
    max_length: int,
) -> dict[str, float]:
    """Seconds per pass over `sentences`, one at a time, of each model's encoder (pooling costs next to nothing).
    With one tokenizer the two are timed in turn within each pass (`time_models`), so machine noise hits both
    alike; with two, one after the other, each on its own tokens."""

    def batches(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list:
        return [
            tokenizer(s, truncation=True, max_length=max_length, return_tensors="pt").to(model.device)
            for s in sentences
        ]

    timing = {"repeats": 3, "min_seconds": 3.0, "max_repeats": 10}
    if same_tokenization(teacher[1], student[1]):
        seconds, passes = time_models({"teacher": teacher[0], "student": student[0]}, batches(*teacher), **timing)
    else:
        seconds, passes = {}, []
        for name, (model, tokenizer) in (("teacher", teacher), ("student", student)):
            alone, count = time_models({name: model}, batches(model, tokenizer), **timing)
            seconds.update(alone)
            passes.append(count)
        passes = min(passes)
    return {
        "teacher_seconds": seconds["teacher"],
        "student_seconds": seconds["student"],
        "speedup": seconds["teacher"] / seconds["student"],
        "sentences": len(sentences),
        "passes": passes,
    }


def describe_pooling(pooling: Pooling) -> str:
    kind = "mean pooling over the tokens" if pooling.mode == "mean" else "the [CLS] token's state"
    return f"{kind}{', L2-normalised' if pooling.normalize else ''}"


def print_summary(
    similarity: list[Similarity], agreement: dict[str, float], sentences: int, speed: dict[str, float]
) -> None:
    width = max(len(s.label) for s in similarity)
    lines = [f"{'Lee et al. (2005) human ratings':<{width}}  {'Pearson':>8}  {'Spearman':>8}"]
    for s in similarity:
        if s.pearson is None:
            lines.append(f"{s.label:<{width}}  {s.note}")
        else:
            lines.append(f"{s.label:<{width}}  {s.pearson:>8.3f}  {s.spearman:>8.3f}")
    teacher = similarity[0]
    student = next(s for s in similarity if s.label == EMBEDDING_STUDENT_LABEL)
    lines += [
        f"student keeps {student.pearson / teacher.pearson:.1%} of the teacher's Pearson, "
        f"{student.spearman / teacher.spearman:.1%} of its Spearman",
        f"agreement with the teacher on {sentences} held-out sentences: mean cosine {agreement['mean_cosine']:.3f}, "
        f"nearest-neighbour agreement {agreement['neighbour_agreement']:.1%}",
        f"batch 1, {speed['sentences']} sentences, median of {speed['passes']} passes: teacher "
        f"{speed['teacher_seconds']:.3f} s, student {speed['student_seconds']:.3f} s; the student is "
        f"{describe_speedup(speed['speedup'])}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    run_script(main)
