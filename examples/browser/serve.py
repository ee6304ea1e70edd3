"""Serve this repository on localhost for the browser example: the page, transformers.js' npm install
(examples/transformers_js, from `make setup`) and your exported folders, nothing from elsewhere.

    python examples/browser/serve.py                                # outputs/onnx_demo, port 8000
    python examples/browser/serve.py --model outputs/distil_bert --port 8080

Why not plain `python -m http.server`: module scripts and streamed WebAssembly need their exact MIME types, which
Python reads from the system's tables and some systems lack.
"""

from __future__ import annotations

import argparse
import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]


class Handler(SimpleHTTPRequestHandler):
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
    }

    def log_message(self, format: str, *args) -> None:
        pass  # one line per file of a 60 MB model is noise; errors still reach the page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="outputs/onnx_demo", help="an exported folder inside the repository")
    parser.add_argument("--dtype", default="q8", choices=["q8", "fp32"], help="the int8 or the fp32 ONNX file")
    parser.add_argument("--port", type=int, default=8000)
    cli = parser.parse_args()
    model = (ROOT / cli.model).resolve()
    file = model / "onnx" / ("model_quantized.onnx" if cli.dtype == "q8" else "model.onnx")
    if ROOT not in model.parents:
        problem = f"--model {cli.model} is outside the repository, which is all this server serves"
    elif not file.is_file():
        problem = f"no {cli.model}/{file.relative_to(model)}"
    else:
        problem = ""
    if problem:
        print(
            f"error: {problem}; export a student into the repository first: "
            "python recipes/export.py --model MODEL --output_dir outputs/onnx_demo",
            file=sys.stderr,
        )
        sys.exit(2)  # a bad input, as the recipes' exit code
    server = ThreadingHTTPServer(("127.0.0.1", cli.port), functools.partial(Handler, directory=str(ROOT)))
    query = urlencode({"model": "/" + model.relative_to(ROOT).as_posix(), "dtype": cli.dtype})
    print(f"open http://127.0.0.1:{server.server_address[1]}/examples/browser/?{query}  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
