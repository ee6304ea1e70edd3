"""examples/browser/: the exported student in a web page, in headless Chromium (Debian's package), offline."""

from __future__ import annotations

import functools
import html.parser
import shutil
import subprocess
import threading
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from test_export_node import EXAMPLE, exported_student, top5  # noqa: F401 (the fixture)
from transformers import AutoTokenizer

from hf_distil.export import INT8_FILE, session

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make setup installs Debian's package)"),
    pytest.mark.slow,  # a browser
]


class _Quiet(SimpleHTTPRequestHandler):
    # Module scripts and streamed WebAssembly need their exact MIME types.
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
    }

    def log_message(self, *args) -> None:
        pass


class _Predictions(html.parser.HTMLParser):
    """The page's state and its <li data-token data-score> answers, from Chromium's DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.state, self.status, self.answers, self._in_status = None, "", [], False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "body":
            self.state = attrs.get("data-state")
        if tag == "li" and "data-token" in attrs:
            self.answers.append((int(attrs["data-token"]), float(attrs["data-score"])))
        self._in_status = attrs.get("id") == "status"

    def handle_data(self, data: str) -> None:
        if self._in_status:
            self.status += data


@pytest.fixture
def site(tmp_path, exported_student):  # noqa: F811
    """A local web server over the page, transformers.js' npm install and the exported student."""
    if not (EXAMPLE / "node_modules" / "@huggingface" / "transformers").is_dir():
        pytest.fail("examples/transformers_js has no node_modules: run `make setup`")
    folder, _ = exported_student
    root = tmp_path / "site"
    (root / "examples").mkdir(parents=True)
    for name in ("browser", "transformers_js"):
        (root / "examples" / name).symlink_to(ROOT / "examples" / name)
    (root / "models").mkdir()
    (root / "models" / "student").symlink_to(folder)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def chromium(url: str, *flags: str) -> subprocess.CompletedProcess:
    # --virtual-time-budget: Chromium waits until the page is idle (model loaded, answer drawn), up to 2 minutes.
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=120000", *flags, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("dtype", ["fp32", "q8"])
def test_the_page_fills_the_mask_as_the_model_does(site, exported_student, tmp_path, dtype):  # noqa: F811
    folder, student = exported_student
    text = "Paris is the [MASK] of France."
    query = urllib.parse.urlencode({"model": "/models/student", "dtype": dtype, "text": text})
    url = f"{site}/examples/browser/?{query}"
    page = _Predictions()
    page.feed(chromium(url, "--dump-dom").stdout)
    assert page.state == "done", page.status

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
    assert [token for token, _ in page.answers] == ids
    np.testing.assert_allclose([score for _, score in page.answers], scores, atol=1e-5, rtol=1e-3)
    assert f"/models/student ({dtype})" in page.status and "ms in this browser" in page.status

    screenshot = tmp_path / "page.png"
    chromium(url, f"--screenshot={screenshot}", "--window-size=900,600")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000
