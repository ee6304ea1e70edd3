"""Saving an embedder in the Sentence Transformers layout, so that `SentenceTransformer(folder)` loads it whole.

Beside a model and tokenizer saved by `save_pretrained`, Sentence Transformers reads `modules.json` (the chain of
modules: transformer, pooling, normalisation), `1_Pooling/config.json`, `2_Normalize/`, `sentence_bert_config.json`
(the longest input) and `config_sentence_transformers.json` (the similarity function). We write them under the
module names and keys that every release from 2.x to 6.x reads (`sentence_transformers.models.Pooling`,
`pooling_mode_mean_tokens`), as the Hub's all-MiniLM-L6-v2 holds them: the names 6.x writes itself are unknown to
older releases, and 6.x maps the old names to its own modules. `Pooling.from_folder` reads the folder back.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers

from .pooling import Pooling

_MODULE_TYPE = "sentence_transformers.models.{}"
_POOLING_FOLDER = "1_Pooling"
_NORMALIZE_FOLDER = "2_Normalize"
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def save_sentence_transformers_layout(
    folder: str | Path, pooling: Pooling, embedding_width: int, max_seq_length: int
) -> None:
    """Write the Sentence Transformers files beside the model and tokenizer already saved in `folder`.

    embedding_width: the model's hidden size (the pooled vector's width); max_seq_length: the longest input in
    tokens, cut there at encoding time (the length the embeddings were distilled and evaluated at).
    """
    folder = Path(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": _MODULE_TYPE.format("Transformer")},
        {"idx": 1, "name": "1", "path": _POOLING_FOLDER, "type": _MODULE_TYPE.format("Pooling")},
    ]
    if pooling.normalize:
        modules.append({"idx": 2, "name": "2", "path": _NORMALIZE_FOLDER, "type": _MODULE_TYPE.format("Normalize")})
        # An empty folder does not survive a Hub upload; 6.x reads these two names from the file, older releases
        # nothing.
        _write_json(
            folder / _NORMALIZE_FOLDER / "config.json",
            {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"},
        )
    pooling_config = {
        "word_embedding_dimension": embedding_width,
        "pooling_mode_cls_token": pooling.mode == "cls",
        "pooling_mode_mean_tokens": pooling.mode == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }
    _write_json(folder / _POOLING_FOLDER / "config.json", pooling_config)
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            # No sentence_transformers version: this folder was not written by it (a newer one would warn).
            "__version__": {"transformers": transformers.__version__, "pytorch": torch.__version__},
            "model_type": "SentenceTransformer",
            "prompts": {},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")
