"""Publish a saved student (a recipe's --output_dir) to the Hub: safetensors, tokenizer, card; never pickles.

    python recipes/push_to_hub.py --model outputs/distil_bert --repo_id you/distil-mini

The token comes from HF_TOKEN or `hf auth login` (never a flag: a flag's value lands in shell history and in
launchers' error reports). HF_ENDPOINT points at a private Hub. A failed upload leaves the folder as it was:
run the same command again.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from hf_distil.cli.run import run_script
from hf_distil.hub.card import push_to_hub


@dataclass
class PushArguments:
    model: str = field(metadata={"help": "Folder of a saved student (config.json, model.safetensors, tokenizer)."})
    repo_id: str = field(metadata={"help": "Hub repository to create or update, e.g. you/distil-mini."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private (if it is new)."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to (created if missing)."})


def main() -> None:
    (cli,) = HfArgumentParser(PushArguments).parse_args_into_dataclasses(args=sys.argv[1:])
    url = push_to_hub(cli.model, cli.repo_id, private=cli.private, revision=cli.revision)
    print(f"pushed {cli.model} to {url}")


if __name__ == "__main__":
    run_script(main)
