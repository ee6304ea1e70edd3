// Fill-mask with a student exported by recipes/export.py, in the browser and offline: the page, the model folder
// and transformers.js (installed by `make setup` in examples/transformers_js) come from one local web server.
//   python -m http.server 8000          # from the repository root
//   http://localhost:8000/examples/browser/?model=/outputs/onnx_demo&dtype=q8&text=Paris%20is%20the%20[MASK].
import { env, pipeline } from "../transformers_js/node_modules/@huggingface/transformers/dist/transformers.min.js";

const query = new URLSearchParams(location.search);
const model = (query.get("model") ?? "/outputs/onnx_demo").replace(/\/$/, ""); // a folder on this server
const dtype = query.get("dtype") ?? "q8"; // onnx/model_quantized.onnx; "fp32": onnx/model.onnx
const form = document.getElementById("form");
const input = document.getElementById("text");
const status = document.getElementById("status");
const list = document.getElementById("predictions");

env.allowRemoteModels = false; // never the Hub
env.allowLocalModels = true; // off by default in browsers: the folder comes from this page's own server
env.localModelPath = model.slice(0, model.lastIndexOf("/") + 1);
// ONNX Runtime's WebAssembly files from the local npm install, not from a CDN.
env.backends.onnx.wasm.wasmPaths = new URL("../transformers_js/node_modules/onnxruntime-web/dist/", import.meta.url).href;

async function fill(text) {
  status.textContent = "Thinking…";
  const started = performance.now();
  const results = await unmask(text, { top_k: 5 });
  list.replaceChildren(
    ...results.map((r) => {
      const item = document.createElement("li");
      item.dataset.token = r.token;
      item.dataset.score = r.score;
      item.textContent = `${r.token_str} (${(100 * r.score).toFixed(1)}%)`;
      return item;
    }),
  );
  status.textContent = `${model} (${dtype}), ${(performance.now() - started).toFixed(0)} ms in this browser`;
  document.body.dataset.state = "done";
}

let unmask;
try {
  unmask = await pipeline("fill-mask", model.slice(model.lastIndexOf("/") + 1), { dtype });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    fill(input.value).catch(fail);
  });
  if (query.get("text")) input.value = query.get("text");
  await fill(input.value);
} catch (error) {
  fail(error);
}

function fail(error) {
  status.textContent = `Error: ${error.message ?? error}`;
  document.body.dataset.state = "error";
}
