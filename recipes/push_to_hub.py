"""Publish a saved student (a recipe's --output_dir) to the Hub: safetensors, tokenizer, card; never pickles.

    python recipes/push_to_hub.py --model outputs/distil_bert --repo_id you/distil-mini

The token comes from HF_TOKEN or `hf auth login` (never a flag: a flag's value lands in shell history and in
launchers' error reports). HF_ENDPOINT points at a private Hub. A failed upload leaves the folder as it was:
run the same command again.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from hf_distil import push_to_hub
from hf_distil.cli import retry_from_the_shell, run_script
from hf_distil.deploy import EXPORT_REPORT_FILE, ExportReport
from hf_distil.hub import CardReport


@dataclass
class PushArguments:
    model: str = field(metadata={"help": "Folder of a saved student (config.json, model.safetensors, tokenizer)."})
    repo_id: str = field(metadata={"help": "Hub repository to create or update, e.g. you/distil-mini."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private (if it is new)."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to (created if missing)."})


def card_of(folder: Path) -> CardReport | None:
    """The card of a folder that has none yet, when export.py wrote an ONNX export there: how to run it. A folder
    with a README.md (a training recipe's card) keeps it."""
    if (folder / "README.md").exists() or not (folder / EXPORT_REPORT_FILE).exists():
        return None
    return CardReport(onnx=ExportReport.load(folder).for_card())


def main() -> None:
    (cli,) = HfArgumentParser(PushArguments).parse_args_into_dataclasses(args=sys.argv[1:])
    card = card_of(Path(cli.model))
    with retry_from_the_shell(["python", sys.argv[0], *sys.argv[1:]]):  # the same command, quoted
        url = push_to_hub(cli.model, cli.repo_id, card=card, private=cli.private, revision=cli.revision)
    print(f"pushed {cli.model} to {url}")


if __name__ == "__main__":
    run_script(main)
