"""Every run config in recipes/configs parses into its recipe's dataclasses: each key reaches its field, and a key
no dataclass knows (a typo) is refused."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

from hf_distil.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]


def load_recipe(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses defined in the recipe resolve their annotations through it
    spec.loader.exec_module(module)
    return module


CONFIGS = sorted((ROOT / "recipes" / "configs").glob("*.yaml"))


def recipe_of(config: Path) -> str:
    """recipes/configs/<recipe>[_<variant>].yaml belongs to recipes/<recipe>.py."""
    names = [p.stem for p in (ROOT / "recipes").glob("*.py")]
    return max((n for n in names if config.stem == n or config.stem.startswith(n + "_")), key=len)


def parsed_value(parsed: tuple, key: str):
    return next(getattr(part, key) for part in parsed if hasattr(part, key))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses_and_every_setting_reaches_its_field(config, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    parsed = load_recipe(recipe_of(config)).parse_arguments(["--config", str(config)])
    settings = yaml.safe_load(config.read_text())
    assert settings, f"{config.name} holds no settings"
    for key, value in settings.items():
        if key == "report_to":  # TrainingArguments keeps a list of integrations; "none" is the empty one
            value = [] if value == "none" else [value]
        assert parsed_value(parsed, key) == value, key
    args = next(part for part in parsed if hasattr(part, "output_dir"))  # the TrainingArguments, wherever it is
    assert args.output_dir.startswith("outputs/")
    assert args.seed == 56 or recipe_of(config) != "distil_bert"  # the reference's seed for DistilBERT runs


def test_every_config_has_a_recipe():
    recipes = {recipe_of(c) for c in CONFIGS}
    assert recipes == {"distil_bert", "distil_bilstm", "distil_embeddings"} and len(CONFIGS) >= 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("learning_rte: 1.0e-4\n", "unknown setting 'learning_rte'; did you mean 'learning_rate'?"),
        ("alpha_ce: 5.0\nstudent_layer: 0,2\n", "unknown setting 'student_layer'; did you mean 'student_layers'?"),
        ("temperature: 0\n", "temperature must be > 0"),
        ("- learning_rate\n", "must map setting names to values, got a list"),
    ],
)
def test_a_config_with_a_typo_or_a_bad_value_is_refused_in_one_line(tmp_path, monkeypatch, text, message):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    config = tmp_path / "run.yaml"
    config.write_text(text)
    with pytest.raises(UsageError, match=re.escape(message)) as info:
        load_recipe("distil_bert").parse_arguments(["--config", str(config)])
    assert "\n" not in str(info.value)


def test_command_line_overrides_the_file():
    _, data_args, args = load_recipe("distil_bert").parse_arguments(["--max_steps", "3", "--max_seq_length", "64"])
    assert args.max_steps == 3 and data_args.max_seq_length == 64
    assert args.learning_rate == 1e-3 and args.temperature == 1.0  # still from the default YAML


def test_paper_config_reaches_4096_sequences_on_8_gpus():
    from hf_distil.launch import accumulation_for

    assert accumulation_for(4096, 16, 8) == 32


def test_recipes_is_not_a_package():
    assert not (ROOT / "recipes" / "__init__.py").exists()
