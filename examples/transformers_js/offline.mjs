// Load a pipeline from a folder written by recipes/export.py, with the Hub switched off.
import path from "node:path";
import { env, pipeline } from "@huggingface/transformers";

export const DTYPES = ["q8", "fp32"]; // onnx/model_quantized.onnx, onnx/model.onnx

export async function offlinePipeline(task, folder, dtype) {
  if (!DTYPES.includes(dtype)) throw new Error(`dtype must be one of ${DTYPES.join(", ")}, got ${dtype}`);
  const absolute = path.resolve(folder);
  env.allowRemoteModels = false; // everything comes from the folder; nothing is fetched
  env.localModelPath = path.dirname(absolute) + path.sep; // transformers.js reads <localModelPath>/<model id>/...
  return pipeline(task, path.basename(absolute), { dtype });
}

export function usage(line) {
  console.error(`usage: ${line}`);
  process.exit(2);
}
