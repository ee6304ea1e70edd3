// Fill-mask with a student exported by recipes/export.py, in the browser and offline: the page, the model folder
// and transformers.js (installed by `make setup` in examples/transformers_js) come from one local web server.
//   python -m http.server 8000          # from the repository root
//   http://localhost:8000/examples/browser/?model=/outputs/onnx_demo&dtype=q8&text=Paris%20is%20the%20[MASK].
// A sentence embedder (task=feature-extraction; pooling=mean|cls, normalize=true|false as its modules say) embeds
// the sentences of the box, separated by "|", and shows each one's cosine with the first.
//   ...?task=feature-extraction&model=/outputs/embedder_onnx&text=A%20cat%20sat.|A%20dog%20ran.
import { env, pipeline } from "../transformers_js/node_modules/@huggingface/transformers/dist/transformers.min.js";

const query = new URLSearchParams(location.search);
const model = (query.get("model") ?? "/outputs/onnx_demo").replace(/\/$/, ""); // a folder on this server
const dtype = query.get("dtype") ?? "q8"; // onnx/model_quantized.onnx; "fp32": onnx/model.onnx
const task = query.get("task") ?? "fill-mask"; // or "feature-extraction"
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
  const results = await modelPipeline(text, { top_k: 5 });
  list.replaceChildren(
    ...results.map((r) => {
      const item = document.createElement("li");
      item.dataset.token = r.token;
      item.dataset.score = r.score;
      item.textContent = `${r.token_str} (${(100 * r.score).toFixed(1)}%)`;
      return item;
    }),
  );
  done(started);
}

async function embed(text) {
  status.textContent = "Thinking…";
  const started = performance.now();
  const sentences = text.split("|").map((s) => s.trim()).filter(Boolean);
  const options = { pooling: query.get("pooling") ?? "mean", normalize: query.get("normalize") !== "false" };
  const vectors = (await modelPipeline(sentences, options)).tolist();
  const norm = (v) => Math.hypot(...v);
  const cosine = (a, b) => a.reduce((sum, x, i) => sum + x * b[i], 0) / (norm(a) * norm(b));
  list.replaceChildren(
    ...vectors.map((vector, i) => {
      const item = document.createElement("li");
      item.dataset.vector = JSON.stringify(vector);
      item.textContent = `${sentences[i]} (cosine with the first: ${cosine(vector, vectors[0]).toFixed(3)})`;
      return item;
    }),
  );
  done(started);
}

function done(started) {
  status.textContent = `${model} (${dtype}), ${(performance.now() - started).toFixed(0)} ms in this browser`;
  document.body.dataset.state = "done";
}

let modelPipeline;
try {
  const answer = task === "feature-extraction" ? embed : fill;
  if (task === "feature-extraction") {
    document.querySelector("h1").textContent = "Sentence embeddings";
    document.querySelector("button").textContent = "Embed";
    input.value = "A cat sat on the mat. | A kitten rested on the rug. | Stocks fell sharply today.";
  }
  modelPipeline = await pipeline(task, model.slice(model.lastIndexOf("/") + 1), { dtype });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    answer(input.value).catch(fail);
  });
  if (query.get("text")) input.value = query.get("text");
  await answer(input.value);
} catch (error) {
  fail(error);
}

function fail(error) {
  status.textContent = `Error: ${error.message ?? error}`;
  document.body.dataset.state = "error";
}
