/**
 * A two-step training notebook on the webgpu backend (SwiftShader here),
 * through `retromae run`: the backend is chosen in a cell, the live chart
 * draws from a GPU run, and a tensor that lives on the GPU displays as a
 * cell's value (read with an awaited transfer: webgpu has no synchronous read
 * in Node), and a step's GPU time is profiled by kernel from the package's
 * public API (Trainer.profile, formatProfile).
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { SHARED_DATA } from "../helpers";
import { useSoftwareVulkan } from "../webgpu-helpers";

const ROOT = path.resolve(__dirname, "..", "..");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-webgpu-nb-"));
const ICD = useSoftwareVulkan();

const code = (source: string) => ({ cell_type: "code", metadata: {}, execution_count: null, outputs: [], source });
const notebook = {
  nbformat: 4,
  nbformat_minor: 5,
  metadata: { kernelspec: { name: "retromae", display_name: "RetroMAE (TypeScript)", language: "typescript" } },
  cells: [
    code(`import { backend, BertTokenizer, Vocab, RetroMAE, PackedCorpus, Trainer, loadBeir, formatProfile } from "retromae";
const choice = await backend.use("webgpu");
backend.describe(choice)`),
    code(`const ds = loadBeir(${JSON.stringify(path.join(SHARED_DATA, "beir-scifact"))});
const texts = [...ds.corpus.values()].slice(0, 40).map((d) => d.text);
const chars = "abcdefghijklmnopqrstuvwxyz0123456789.,;:()-/%".split("");
const tokenizer = new BertTokenizer(new Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ...chars, ...chars.map((c) => "##" + c)]));
const model = RetroMAE.create("tiny", { seed: 1, overrides: { vocabSize: tokenizer.vocab.size, hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1, maxPositionEmbeddings: 64 } });
const trainer = new Trainer({ model, tokenizer, data: PackedCorpus.fromTexts(texts, tokenizer, 32), batchSize: 4, maxLength: 32, lr: 1e-3, seed: 1 });
const result = await trainer.fit({ steps: 2 });
\`\${result.status}: \${result.stepsTaken} steps, loss \${result.lastLoss!.loss.toFixed(3)}\``),
    code(`model.weights.get("cls.predictions.bias")`),
    code(`console.log(formatProfile(await trainer.profile(), 5))`),
  ],
};

test("a two-step notebook trains on webgpu, draws its live chart, shows a GPU tensor and profiles a step", () => {
  const src = path.join(work, "webgpu.ipynb");
  const out = path.join(work, "webgpu.out.ipynb");
  fs.writeFileSync(src, JSON.stringify(notebook));
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "retromae.js"), "run", src, "--out", out, "--timeout", "300"], {
    encoding: "utf8",
    timeout: 600_000,
    env: { ...process.env, VK_ICD_FILENAMES: ICD },
  });
  assert.is(r.status, 0, r.stdout + r.stderr);
  const nb = JSON.parse(fs.readFileSync(out, "utf8"));
  const outputs = nb.cells.map((c: { outputs: { output_type: string; data?: Record<string, unknown>; text?: unknown }[] }) => c.outputs);
  const text = (o: { data?: Record<string, unknown> }) => [o.data?.["text/plain"]].flat().join("");
  assert.not.ok(outputs.flat().some((o: { output_type: string }) => o.output_type === "error"), JSON.stringify(outputs));
  assert.match(outputs[0].map(text).join(""), /using webgpu \(gpu\) from @tensorflow\/tfjs-backend-webgpu on SwiftShader/);
  assert.ok(outputs[1].some((o: { data?: Record<string, unknown> }) => o.data?.["application/vnd.plotly.v1+json"]), "the live chart");
  assert.match(outputs[1].map(text).join(""), /done: 2 steps, loss \d+\.\d{3}/);
  assert.match(outputs[2].map(text).join(""), /^'?Tensor float32 \[\d+\]  min [-0-9.e]+  mean [-0-9.e]+  max/);
  const profile = outputs[3].map((o: { text?: unknown }) => [o.text].flat().join("")).join("");
  assert.match(profile, /^step [345]: \d+ dispatches, [\d.]+ ms of GPU time on SwiftShader[^\n]*\(a software adapter: not GPU figures\)/);
  assert.match(profile, /GPU ms\s+share\s+calls\s+kind\n[\s\S]*matmul/);
});

test.after(() => fs.rmSync(work, { recursive: true, force: true }));
test.run();
