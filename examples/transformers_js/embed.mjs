// Sentence embeddings from an exported sentence embedder, as its Sentence Transformers modules pool them; prints
// {pipeline, sentence_embedding} as JSON: the feature-extraction pipeline's vectors (it pools the token states
// itself) and the graph's own pooled output, one row per sentence.
//   node embed.mjs FOLDER "A sentence." ["Another one." ...] [--dtype q8|fp32] [--pooling mean|cls] [--normalize false]
import { parseArgs } from "node:util";
import { offlinePipeline, usage } from "./offline.mjs";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    dtype: { type: "string", default: "q8" },
    pooling: { type: "string", default: "mean" },
    normalize: { type: "string", default: "true" },
  },
});
const [folder, ...texts] = positionals;
if (!folder || texts.length === 0) {
  usage('node embed.mjs FOLDER "A sentence." ["Another one." ...] [--dtype q8|fp32] [--pooling mean|cls] [--normalize false]');
}
const embed = await offlinePipeline("feature-extraction", folder, values.dtype);
const vectors = await embed(texts, { pooling: values.pooling, normalize: values.normalize === "true" });
const outputs = await embed.model(embed.tokenizer(texts, { padding: true, truncation: true }));
console.log(JSON.stringify({ pipeline: vectors.tolist(), sentence_embedding: outputs.sentence_embedding?.tolist() }));
