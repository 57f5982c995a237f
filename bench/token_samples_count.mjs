// Count each sample with OpenAI's tokenizers (js-tiktoken): node token_samples_count.mjs samples.json truth.json
import { getEncoding } from "js-tiktoken";
import fs from "fs";

const samples = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const cl100k = getEncoding("cl100k_base"), o200k = getEncoding("o200k_base");
const out = {};
for (const [name, text] of Object.entries(samples)) out[name] = [cl100k.encode(text).length, o200k.encode(text).length];
fs.writeFileSync(process.argv[3], JSON.stringify(out));
