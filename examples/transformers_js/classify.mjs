// Classify a sentence with an exported sequence classifier; prints every label's score as JSON ({label, score}).
//   node classify.mjs FOLDER "A warm, funny and moving film." [q8|fp32]
import { offlinePipeline, usage } from "./offline.mjs";

const [folder, text, dtype = "q8"] = process.argv.slice(2);
if (!folder || !text) usage('node classify.mjs FOLDER "A sentence." [q8|fp32]');
const classify = await offlinePipeline("text-classification", folder, dtype);
console.log(JSON.stringify(await classify(text, { top_k: null })));
