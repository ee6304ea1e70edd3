"""Every run config in recipes/configs parses into the recipe's dataclasses (no unknown keys)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_recipe(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("config", sorted((ROOT / "recipes" / "configs").glob("distil_bert*.yaml")), ids=lambda p: p.name)
def test_config_parses(config, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    model_args, data_args, args = load_recipe("distil_bert").parse_arguments(["--config", str(config)])
    assert args.output_dir.startswith("outputs/") and args.seed == 56


def test_command_line_overrides_the_file():
    _, data_args, args = load_recipe("distil_bert").parse_arguments(["--max_steps", "3", "--max_seq_length", "64"])
    assert args.max_steps == 3 and data_args.max_seq_length == 64
    assert args.learning_rate == 5e-4  # still from the default YAML


def test_paper_config_reaches_4096_sequences_on_8_gpus():
    from hf_distil.config import accumulation_for

    assert accumulation_for(4096, 16, 8) == 32


def test_recipes_is_not_a_package():
    assert not (ROOT / "recipes" / "__init__.py").exists()
