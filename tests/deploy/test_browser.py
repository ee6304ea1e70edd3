"""examples/browser/: the exported student in a web page, in headless Chromium (Debian's package), offline."""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
import urllib.parse
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from test_export_embedder import encode_with_sentence_transformers
from test_export_node import EXAMPLE, exported_student, top5  # noqa: F401 (the fixture)
from transformers import AutoTokenizer

from hf_distil.deploy.export import INT8_FILE, session

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make setup installs Debian's package)"),
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: it drives Chromium"),
    pytest.mark.slow,  # a browser
]


def _serve_module():
    spec = importlib.util.spec_from_file_location("serve", ROOT / "examples" / "browser" / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def site(tmp_path, exported_student, exported_embedder):  # noqa: F811
    """A local web server over the page, transformers.js' npm install, the exported student and embedder."""
    if not (EXAMPLE / "node_modules" / "@huggingface" / "transformers").is_dir():
        pytest.fail("examples/transformers_js has no node_modules: run `make setup`")
    folder, _ = exported_student
    root = tmp_path / "site"
    (root / "examples").mkdir(parents=True)
    for name in ("browser", "transformers_js"):
        (root / "examples" / name).symlink_to(ROOT / "examples" / name)
    (root / "models").mkdir()
    (root / "models" / "student").symlink_to(folder)
    (root / "models" / "embedder").symlink_to(exported_embedder[1])
    handler = _serve_module().Handler  # the example's own server, with its MIME types
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def open_page(url: str, screenshot: Path) -> dict:
    """What the page shows once it sets data-state ({state, status, answers}), through browser_page.mjs beside it."""
    command = ["node", "--experimental-websocket", str(Path(__file__).with_name("browser_page.mjs"))]
    done = subprocess.run([*command, CHROMIUM, url, str(screenshot)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("dtype", ["fp32", "q8"])
def test_the_page_fills_the_mask_as_the_model_does(site, exported_student, tmp_path, dtype):  # noqa: F811
    folder, student = exported_student
    text = "Paris is the [MASK] of France."
    query = urllib.parse.urlencode({"model": "/models/student", "dtype": dtype, "text": text})
    url = f"{site}/examples/browser/?{query}"
    screenshot = tmp_path / "page.png"
    page = open_page(url, screenshot)
    assert page["state"] == "done", page["status"]

    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoded = tokenizer(text, return_tensors="pt")
    at = int((encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero())
    inputs = {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask")}
    if dtype == "fp32":
        with torch.no_grad():
            logits = student(**inputs).logits[0, at].numpy()
    else:
        logits = session(folder / INT8_FILE).run(None, {k: v.numpy() for k, v in inputs.items()})[0][0, at]
    ids, scores = top5(logits)
    assert [answer["token"] for answer in page["answers"]] == ids
    # int8: onnxruntime-web's WebAssembly kernels are not the native ones Python's session runs, and a few
    # activations land on the neighbouring int8 step (measured: probabilities up to 1.0% apart, same ranking).
    rtol = 1e-3 if dtype == "fp32" else 2e-2
    np.testing.assert_allclose([answer["score"] for answer in page["answers"]], scores, atol=1e-5, rtol=rtol)
    assert f"/models/student ({dtype})" in page["status"] and "ms in this browser" in page["status"]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000


def test_the_page_embeds_sentences_as_sentence_transformers_does(site, exported_embedder, tmp_path):
    folder, _, _ = exported_embedder
    sentences = ["A cat sat on the mat.", "A kitten rested on the rug.", "Stocks fell sharply on Monday."]
    query = {"task": "feature-extraction", "model": "/models/embedder", "dtype": "fp32", "text": " | ".join(sentences)}
    page = open_page(f"{site}/examples/browser/?{urllib.parse.urlencode(query)}", tmp_path / "page.png")
    assert page["state"] == "done", page["status"]
    expected = encode_with_sentence_transformers(folder, sentences)  # PyTorch, pooled by sentence-transformers
    np.testing.assert_allclose([answer["vector"] for answer in page["answers"]], expected, atol=1e-4, rtol=0)
    cosines = [float(answer["text"].rsplit(": ", 1)[1].rstrip(")")) for answer in page["answers"]]
    np.testing.assert_allclose(cosines, expected @ expected[0], atol=1e-3)
    assert cosines[1] > cosines[2]  # the kitten is nearer the cat than the stock market is


def test_a_missing_model_folder_is_said_on_the_page(site, tmp_path):
    page = open_page(f"{site}/examples/browser/?model=/models/missing", tmp_path / "page.png")
    assert page["state"] == "error" and page["status"].startswith("Error: ") and not page["answers"]


def test_the_server_refuses_a_folder_with_no_export_in_one_line(tmp_path):
    serve = [sys.executable, str(ROOT / "examples" / "browser" / "serve.py")]
    for model, says in (
        ("outputs/nothing_here", "no outputs/nothing_here/onnx/model_quantized.onnx"),
        (str(tmp_path), "is outside the repository"),
    ):
        done = subprocess.run([*serve, "--model", model], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and not done.stdout
        assert len(done.stderr.splitlines()) == 1 and says in done.stderr and "recipes/export.py" in done.stderr
