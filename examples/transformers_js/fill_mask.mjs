// Fill [MASK] with an exported student; prints the top-k as JSON ({score, token, token_str, sequence}).
//   node fill_mask.mjs FOLDER "Paris is the [MASK] of France." [q8|fp32] [top_k]
import { offlinePipeline, usage } from "./offline.mjs";

const [folder, text, dtype = "q8", topK = "5"] = process.argv.slice(2);
if (!folder || !text) usage('node fill_mask.mjs FOLDER "A sentence with [MASK]." [q8|fp32] [top_k]');
const fill = await offlinePipeline("fill-mask", folder, dtype);
console.log(JSON.stringify(await fill(text, { top_k: Number(topK) })));
