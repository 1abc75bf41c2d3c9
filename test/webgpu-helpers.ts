/**
 * Micro models for the webgpu tests. SwiftShader (a CPU emulating a GPU)
 * takes about 96 s for one tiny step at 8×64, so these tests use one layer,
 * hidden 32 and a vocabulary of a few hundred WordPieces.
 */
import * as fs from "fs";
import { execFileSync } from "child_process";
import { Vocab } from "../lib/text/vocab";
import { BertTokenizer } from "../lib/text/tokenizer";
import { RetroMAE } from "../lib/model/retromae";
import { Rng } from "../lib/engine/rng";

/**
 * Point the Vulkan loader at SwiftShader's ICD (Debian's chromium ships it),
 * for this process only. RETROMAE_TEST_VK_ICD overrides the path.
 */
export function useSwiftShader(): string {
  let icd = process.env.RETROMAE_TEST_VK_ICD ?? "";
  if (!icd) {
    try {
      icd = execFileSync("dpkg", ["-L", "chromium-common"], { encoding: "utf8" }).split("\n").find((l) => l.endsWith("vk_swiftshader_icd.json")) ?? "";
    } catch {
      icd = "";
    }
  }
  if (!icd || !fs.existsSync(icd)) {
    throw new Error("SwiftShader's Vulkan ICD was not found: apt-get install chromium (it ships vk_swiftshader_icd.json), or set RETROMAE_TEST_VK_ICD.");
  }
  process.env.VK_ICD_FILENAMES = icd;
  return icd;
}

/** Specials, single characters and their ## continuations, then the most frequent words of `texts`. */
export function microTokenizer(texts: string[], words = 200): BertTokenizer {
  const chars = "abcdefghijklmnopqrstuvwxyz0123456789".split("");
  const punct = ".,;:()[]-/%+=<>'\"?!".split("");
  const counts = new Map<string, number>();
  for (const t of texts) for (const w of t.toLowerCase().match(/[a-z]{3,}/g) ?? []) counts.set(w, (counts.get(w) ?? 0) + 1);
  const top = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, words).map(([w]) => w);
  return new BertTokenizer(new Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ...chars, ...punct, ...chars.map((c) => `##${c}`), ...top]));
}

/**
 * One layer, hidden 32, 2 heads. `initializerRange` 0.02 is BERT's; a probe
 * test takes a wider one, so that random documents' [CLS] vectors differ by
 * more than float rounding and a ranking is not decided by near-ties.
 */
export function microModel(vocabSize: number, seed = 5, initializerRange = 0.02): RetroMAE {
  return RetroMAE.create("tiny", { rng: new Rng(seed), overrides: { vocabSize, hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1, maxPositionEmbeddings: 64, initializerRange } });
}
