"""The README's own text, run as a user runs it: the Python block in a fresh interpreter, every script's --help."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted([*ROOT.glob("recipes/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("examples/*/*.py")])
pytestmark = pytest.mark.slow  # each script's --help is a fresh interpreter (20-35 s on 2 busy cores)


def readme_block(heading: str) -> str:
    """The first ```python block under `heading` in README.md, verbatim."""
    section = (ROOT / "README.md").read_text().split(f"## {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@functools.cache
def script_help(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_script_answers_help_and_lists_its_options(script):
    done = script_help(str(script.relative_to(ROOT)))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:") and "--" in done.stdout.split("usage:", 1)[1]


@pytest.mark.recipe
def test_use_it_in_your_own_code_block_runs_as_written_and_publishes(tmp_path, hub):
    (tmp_path / "block.py").write_text(readme_block("Use it in your own code"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_TOKEN": "hf_readme_token", "HF_HUB_OFFLINE": "0"}
    done = subprocess.run(
        [sys.executable, "block.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    files = hub.files[("you/distil-mini", "main")]
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "loss_terms.png"} <= set(files)
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    card = files["README.md"].decode()
    assert_card_states_only_what_is_known(card, files)
    assert "minilm-wiki-mlm" in card and "sentence-transformers/all-MiniLM-L6-v2" in card  # teacher and its base
    assert "teacher's layers\n0, 2, 4 and" in card and "| layer map (teacher layers kept) | 0, 2, 4 |" in card
    assert "| layers | 6 | 3 |" in card and "| parameters | 22.7M |" in card


def assert_card_states_only_what_is_known(card: str, files: dict[str, bytes]) -> None:
    """No unknown value printed as ?, nan or 0.0M, and every linked file exists beside the card."""
    body = card.split("---", 2)[2]
    cells = [c.strip() for line in body.splitlines() if line.startswith("|") for c in line.strip("|").split("|")]
    assert "?" not in cells and not any(c in ("nan", "0.0M") or "nan " in c for c in cells), cells
    assert not re.search(r"\bnan\b", body, re.I)
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", body):
        assert link in files, f"the card embeds {link}, which was not uploaded"
    header = yaml.safe_load(card.split("---")[1])
    assert header["pipeline_tag"] == "fill-mask"
    ModelCard(card)  # parses


def readme_commands() -> list[tuple[str, list[str]]]:
    """(script, its --flags) for every command line in README.md's bash blocks that runs a script of ours."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].replace("$ft", "python recipes/finetune.py --max_steps 100 --learning_rate 1")
            match = re.search(r"((?:recipes|benchmarks|examples/\w+)/\w+\.py)(.*)", line)
            if match:
                commands.append((match.group(1), re.findall(r"(--\w+)", match.group(2))))
    return commands


@pytest.mark.parametrize("script, flags", readme_commands(), ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_every_flag_in_the_readme_exists(script, flags):
    assert (ROOT / script).exists(), script
    done = script_help(script)
    known = set(re.findall(r"(--\w+)", done.stdout))
    assert not set(flags) - known, (
        f"{script}: the README passes {sorted(set(flags) - known)}, which --help does not list"
    )
