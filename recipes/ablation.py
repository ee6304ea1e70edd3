"""The paper's Table 4 at small scale: what each part of the triple loss, and the initialisation, is worth.

    python recipes/ablation.py --max_steps 60         # offline default, ~4 min per variant on 2 cores
    python recipes/ablation.py --max_steps 300 -- --teacher bert-base-uncased ...   # flags after -- go to every run

Each variant runs recipes/distil_bert.py with the same data, steps and seed, then fine-tunes the result on
the offline polarity demo (recipes/finetune.py); the table gives held-out MLM top-1 at [MASK] and the
downstream accuracy, each as a difference from the full triple loss (paper: no L_cos -4.07, no L_mlm
-1.90, L_ce alone -5.06, random init -4.83 GLUE points).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from hf_distil.errors import run_script

RECIPES = Path(__file__).resolve().parent
VARIANTS = {
    "triple loss": [],
    "no L_cos": ["--alpha_cos", "0"],
    "no L_mlm": ["--alpha_mlm", "0"],
    "L_ce alone": ["--alpha_cos", "0", "--alpha_mlm", "0"],
    "random init": ["--random_init_student", "true"],
}


def run(script: str, flags: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(RECIPES.parent)}
    done = subprocess.run([sys.executable, str(RECIPES / script), *flags], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{script} {' '.join(flags)} failed:\n{done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="outputs/ablation")
    parser.add_argument("--max_steps", type=int, default=100)
    parser.add_argument(
        "--finetune_steps", type=int, default=100, help="updates of 16 sentences on the 160-sentence demo"
    )
    parser.add_argument("--config", default=None, help="distil_bert config file for every run")
    parser.add_argument("extra", nargs="*", help="after --: flags passed to every distil_bert run")
    cli = parser.parse_args()
    out = Path(cli.output_dir)
    table = {}
    for name, flags in VARIANTS.items():
        folder = out / name.replace(" ", "_")
        common = (["--config", cli.config] if cli.config else []) + [
            "--max_steps",
            str(cli.max_steps),
            "--output_dir",
            str(folder),
            "--save_strategy",
            "no",
        ]
        print(f"[{name}] distilling ...", flush=True)
        run("distil_bert.py", common + flags + cli.extra)
        held_out = json.loads((folder / "held_out_results.json").read_text())["student"]
        print(f"[{name}] fine-tuning on the polarity demo ...", flush=True)
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
                "56",
                "--per_device_train_batch_size",
                "16",
                "--max_seq_length",
                "64",
            ],
        )
        downstream = json.loads((folder / "polarity" / "eval_results.json").read_text())["eval_accuracy"]
        table[name] = {"mlm_top1": 100 * held_out["accuracy"], "polarity_accuracy": 100 * downstream}
    (out / "ablation.json").write_text(json.dumps(table, indent=2) + "\n")
    base = table["triple loss"]
    print(f"{'variant':<14}{'MLM top-1':>11}{'Δ':>8}{'polarity acc':>14}{'Δ':>8}")
    for name, row in table.items():
        print(
            f"{name:<14}{row['mlm_top1']:>11.2f}{row['mlm_top1'] - base['mlm_top1']:>+8.2f}"
            f"{row['polarity_accuracy']:>14.2f}{row['polarity_accuracy'] - base['polarity_accuracy']:>+8.2f}"
        )


if __name__ == "__main__":
    run_script(main)
