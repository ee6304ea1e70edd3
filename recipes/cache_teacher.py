"""Run the teacher once over the corpus and store its top-k logits, for training without a live teacher.

    python recipes/cache_teacher.py --output_dir outputs/teacher_cache --top_k 32 --copies 2
    accelerate launch recipes/distil_bert.py --teacher_cache outputs/teacher_cache --alpha_cos 0

Same corpus and masking options as recipes/distil_bert.py (its YAML, or --config FILE, is read too, so
the cached rows match the training's restrict_ce_to_mask), but its own output folder: --output_dir, else
outputs/teacher_cache (never the student's folder of that YAML); `--copies` pre-masked
versions are stored, since a cache fixes the masks (see hf_distil/teachers/cache.py). Prints the space
the signals take per token.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import set_seed
from transformers.utils import logging

from hf_distil import DataCollatorForDistillation, DistillationArguments
from hf_distil.cli import (
    ModelArguments,
    check_corpus_dataset,
    check_output_dir,
    mark_output_dir,
    parse_with_config,
    run_script,
)
from hf_distil.data import DataArguments, prepare_corpus
from hf_distil.errors import UsageError
from hf_distil.teachers import build_teacher_cache, bytes_per_token, load_default_teacher, load_teacher, load_tokenizer

logger = logging.get_logger("cache_teacher")
SCRIPT = "cache_teacher.py"  # in the output folder's record
DEFAULT_OUTPUT_DIR = "outputs/teacher_cache"


@dataclass
class CacheArguments:
    top_k: int = field(default=32, metadata={"help": "Teacher logits kept per position (values fp16 + ids int32)."})
    copies: int = field(
        default=1, metadata={"help": "Pre-masked copies of the corpus (training cycles through them)."}
    )
    cache_batch_size: int = field(default=32, metadata={"help": "Sequences per teacher forward."})


def main() -> None:
    config = Path(__file__).with_name("configs") / "distil_bert.yaml"
    model_args, data_args, cache_args, args = parse_with_config(
        (ModelArguments, DataArguments, CacheArguments, DistillationArguments), sys.argv[1:], config
    )
    logging.set_verbosity_info()
    # The YAML's output_dir is the student's folder: the cache goes only where --output_dir says, else its own.
    if not any(arg.split("=")[0] in ("--output_dir", "--output-dir") for arg in sys.argv[1:]):
        args.output_dir = DEFAULT_OUTPUT_DIR
    check_output_dir(
        args.output_dir,
        SCRIPT,
        sources=[("the teacher", n) for n in model_args.teacher or []],
        overwrite=args.overwrite_output_dir,
    )
    check_corpus_dataset(data_args)
    set_seed(args.seed)
    if model_args.teacher:
        if len(model_args.teacher) > 1:
            names = " ".join(model_args.teacher)
            raise UsageError(f"--teacher {names}: a cache holds one teacher's logits; pass one teacher.")
        teacher, tokenizer = load_teacher(model_args.teacher[0]), load_tokenizer(model_args.teacher[0])
    else:
        teacher, tokenizer = load_default_teacher()
    train, _, counts = prepare_corpus(data_args, tokenizer, models=[teacher])  # chunked as the training will be
    collator = DataCollatorForDistillation(
        tokenizer,
        token_counts=counts,
        mlm_probability=args.mlm_probability,
        mask_replace_prob=args.mask_replace_prob,
        random_replace_prob=args.random_replace_prob,
        mlm_smoothing=args.mlm_smoothing,
        whole_word_masking=args.whole_word_masking,
        seed=args.seed,
    )
    cache = build_teacher_cache(
        teacher.to(args.device),
        train,
        collator,
        cache_args.top_k,
        cache_args.copies,
        cache_args.cache_batch_size,
        args.restrict_ce_to_mask,
        data_args.max_seq_length,
    )
    mark_output_dir(args.output_dir, SCRIPT)
    cache.save_to_disk(args.output_dir)
    size = sum(f.stat().st_size for f in Path(args.output_dir).rglob("*") if f.is_file())
    print(
        f"cached {len(cache)} sequences ({cache_args.copies} copies), top-{cache_args.top_k}: "
        f"{bytes_per_token(cache):.1f} bytes of teacher signals per token, "
        f"{size / 2**20:.1f} MiB on disk -> {args.output_dir}"
    )


if __name__ == "__main__":
    run_script(main)
