"""The paper's Table 4 at small scale: what each part of the triple loss, and the initialisation, is worth.

    python recipes/ablation.py --max_steps 60         # offline default, ~4 min per variant on 2 cores
    python recipes/ablation.py --max_steps 300 -- --teacher bert-base-uncased ...   # flags after -- go to every run
    python recipes/ablation.py --variants "triple loss" "with L_relation" "L_relation alone" --seeds 1 2 3

Each variant runs recipes/distil_bert.py with the same data, steps and seed, then fine-tunes the result on
the offline polarity demo (recipes/finetune.py); the table gives held-out MLM top-1 at [MASK] and the
downstream accuracy, each as a difference from the full triple loss (paper: no L_cos -4.07, no L_mlm
-1.90, L_ce alone -5.06, random init -4.83 GLUE points). Beyond the paper: MiniLMv2's self-attention relations
added to the triple loss (weighted like L_ce) and alone, as MiniLMv2 trains. With --seeds each variant runs once
per seed (distillation and fine-tuning) and the table gives the mean ± standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from hf_distil.cli import check_output_dir, mark_output_dir, run_script

RECIPES = Path(__file__).resolve().parent
VARIANTS = {
    "triple loss": [],
    "no L_cos": ["--alpha_cos", "0"],
    "no L_mlm": ["--alpha_mlm", "0"],
    "L_ce alone": ["--alpha_cos", "0", "--alpha_mlm", "0"],
    "random init": ["--random_init_student", "true"],
    "with L_relation": ["--alpha_relation", "5"],
    "L_relation alone": ["--alpha_ce", "0", "--alpha_mlm", "0", "--alpha_cos", "0", "--alpha_relation", "1"],
}
FINETUNE_SEED = 56  # without --seeds


def run(script: str, flags: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(RECIPES.parent)}
    done = subprocess.run([sys.executable, str(RECIPES / script), *flags], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{script} {' '.join(flags)} failed:\n{done.stderr[-2000:]}")


def distil_and_finetune(folder: Path, flags: list[str], cli: argparse.Namespace, seed: int | None) -> dict:
    """One variant at one seed: held-out MLM top-1 at [MASK] and downstream accuracy, in %."""
    common = (["--config", cli.config] if cli.config else []) + [
        "--max_steps",
        str(cli.max_steps),
        "--output_dir",
        str(folder),
        "--save_strategy",
        "no",
    ]
    seeded = ["--seed", str(seed)] if seed is not None else []
    run("distil_bert.py", common + flags + cli.extra + seeded)
    held_out = json.loads((folder / "held_out_results.json").read_text())["student"]
    run(
        "finetune.py",
        [
            "--model",
            str(folder),
            "--output_dir",
            str(folder / "polarity"),
            "--max_steps",
            str(cli.finetune_steps),
            "--save_strategy",
            "no",
            "--report_to",
            "none",
            "--learning_rate",
            "1e-4",
            "--seed",
            str(FINETUNE_SEED if seed is None else seed),
            "--per_device_train_batch_size",
            "16",
            "--max_seq_length",
            "64",
        ],
    )
    downstream = json.loads((folder / "polarity" / "eval_results.json").read_text())["eval_accuracy"]
    return {"mlm_top1": 100 * held_out["accuracy"], "polarity_accuracy": 100 * downstream}


def over_seeds(rows: dict[int, dict]) -> dict:
    """Mean and sample standard deviation of each figure over the seeds, and the runs themselves."""
    summary = {}
    for key in ("mlm_top1", "polarity_accuracy"):
        values = [row[key] for row in rows.values()]
        summary[key] = statistics.mean(values)
        summary[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return {**summary, "seeds": {str(seed): row for seed, row in rows.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="outputs/ablation")
    parser.add_argument("--max_steps", type=int, default=100)
    parser.add_argument(
        "--finetune_steps", type=int, default=100, help="updates of 16 sentences on the 160-sentence demo"
    )
    parser.add_argument("--config", default=None, help="distil_bert config file for every run")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME", help="default: all"
    )
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=None, help="run each variant once per seed (default: the config's)"
    )
    parser.add_argument("extra", nargs="*", help="after --: flags passed to every distil_bert run")
    cli = parser.parse_args()
    out = Path(cli.output_dir)
    check_output_dir(cli.output_dir, "ablation.py")  # each run checks its own folder inside
    mark_output_dir(cli.output_dir, "ablation.py")
    table = {}
    for name in cli.variants:
        folder = out / name.replace(" ", "_")
        if cli.seeds is None:
            print(f"[{name}] distilling and fine-tuning on the polarity demo ...", flush=True)
            table[name] = distil_and_finetune(folder, VARIANTS[name], cli, None)
            continue
        rows = {}
        for seed in cli.seeds:
            print(f"[{name}, seed {seed}] distilling and fine-tuning on the polarity demo ...", flush=True)
            rows[seed] = distil_and_finetune(folder / f"seed_{seed}", VARIANTS[name], cli, seed)
        table[name] = over_seeds(rows)
    (out / "ablation.json").write_text(json.dumps(table, indent=2) + "\n")
    base = table["triple loss" if "triple loss" in table else cli.variants[0]]
    print(f"{'variant':<18}{'MLM top-1':>17}{'Δ':>8}{'polarity acc':>17}{'Δ':>8}")
    for name, row in table.items():
        cells = [f"{cell(row, key):>17}{row[key] - base[key]:>+8.2f}" for key in ("mlm_top1", "polarity_accuracy")]
        print(f"{name:<18}{''.join(cells)}")


def cell(row: dict, key: str) -> str:
    return f"{row[key]:.2f}" + (f" ± {row[key + '_sd']:.2f}" if f"{key}_sd" in row else "")


if __name__ == "__main__":
    run_script(main)
