"""Serve this repository on localhost for the browser example: the page, transformers.js' npm install
(examples/transformers_js, from `make setup`) and your exported folders, nothing from elsewhere.

    python examples/browser/serve.py                                # outputs/onnx_demo, port 8000
    python examples/browser/serve.py --model outputs/distil_bert --port 8080

Why not plain `python -m http.server`: module scripts and streamed WebAssembly need their exact MIME types, which
Python reads from the system's tables and some systems lack.
"""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

from hf_distil.cli import OneLineArgumentParser, run_script
from hf_distil.errors import UsageError

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
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="outputs/onnx_demo", help="an exported folder inside the repository")
    parser.add_argument("--dtype", default="q8", choices=["q8", "fp32"], help="the int8 or the fp32 ONNX file")
    parser.add_argument("--port", type=int, default=8000, help="0 to 65535; 0 takes any free port")
    cli = parser.parse_args()
    model = (ROOT / cli.model).resolve()
    file = model / "onnx" / ("model_quantized.onnx" if cli.dtype == "q8" else "model.onnx")
    export = "export a student into the repository first: python recipes/export.py --model MODEL --output_dir "
    export += "outputs/onnx_demo"
    if ROOT not in model.parents:
        raise UsageError(f"--model {cli.model} is outside the repository, which is all this server serves; {export}")
    if not file.is_file():
        raise UsageError(f"no {cli.model}/{file.relative_to(model)}; {export}")
    if not 0 <= cli.port <= 65535:
        raise UsageError(
            f"--port {cli.port} is not a TCP port; pass one from 1024 to 65535, or --port 0 for any free one."
        )
    try:
        server = ThreadingHTTPServer(("127.0.0.1", cli.port), functools.partial(Handler, directory=str(ROOT)))
    except OSError as error:  # EADDRINUSE, or a privileged port
        raise UsageError(
            f"--port {cli.port}: cannot listen on it ({error.strerror}); pass another --port, or --port 0 for any "
            "free one."
        ) from None
    query = urlencode({"model": "/" + model.relative_to(ROOT).as_posix(), "dtype": cli.dtype})
    print(f"open http://127.0.0.1:{server.server_address[1]}/examples/browser/?{query}  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    run_script(main)
