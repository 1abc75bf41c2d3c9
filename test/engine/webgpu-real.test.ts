/**
 * The real tiny model on real SciFact text, on webgpu against the native
 * backend in the same process: the sizes that SwiftShader is too slow for,
 * on Mesa 25's lavapipe (scripts/lavapipe.sh; about a minute here). The
 * micro-model tests (webgpu.test.ts) check each kernel and path; these check
 * that together, at the real vocabulary, width and lengths, with replayed
 * steps and the inference kernels, the GPU path gives the CPU's numbers.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { backend, use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { loadBeir } from "../../lib/data/beir";
import { loadCheckpoint, RetroMAE } from "../../lib/model/retromae";
import { starterCheckpoint } from "../../lib/model/starter";
import { encodeTexts } from "../../lib/probe/encode";
import { PackedCorpus } from "../../lib/train/data";
import { Trainer } from "../../lib/train/trainer";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { SHARED_DATA } from "../helpers";
import { softwareAdapterName, useSoftwareVulkan } from "../webgpu-helpers";

process.env.RETROMAE_TEST_VULKAN ??= "lavapipe";
useSoftwareVulkan();

const tok = BertTokenizer.bertBaseUncased();
const ds = loadBeir(path.join(SHARED_DATA, "beir-scifact"));

test("the shipped tiny starter encodes 64 SciFact documents (up to 512 tokens) on webgpu as the native backend does: [CLS] within 1e-5, the same neighbours", async () => {
  const docs = [...ds.corpus.values()].slice(0, 64).map((d) => `${d.title} ${d.text}`);
  const vectors: Float32Array[] = [];
  for (const name of ["native", "webgpu"] as const) {
    await use(name);
    const { model } = loadCheckpoint(starterCheckpoint("tiny"));
    vectors.push(await encodeTexts(model, tok, docs, { batchSize: 16, progress: false }));
    model.dispose();
  }
  const adapter = backend.info().webgpu!;
  assert.match(`${adapter.description} ${adapter.architecture} ${adapter.device}`, new RegExp(softwareAdapterName(), "i"));
  const [cpu, gpu] = vectors;
  let worst = 0;
  for (let i = 0; i < cpu.length; i++) worst = Math.max(worst, Math.abs(cpu[i] - gpu[i]));
  assert.ok(worst < 1e-5, `[CLS] max abs diff ${worst}`);
  const H = cpu.length / docs.length;
  const neighbours = (v: Float32Array, i: number) => {
    const sims = docs.map((_, j) => {
      let s = 0;
      for (let h = 0; h < H; h++) s += v[i * H + h] * v[j * H + h];
      return [s, j];
    });
    return sims.sort((a, b) => b[0] - a[0]).slice(0, 10).map(([, j]) => j);
  };
  for (let i = 0; i < docs.length; i++) assert.equal(neighbours(gpu, i), neighbours(cpu, i), `document ${i}'s ten nearest`);
});

/** The matmul choices that `bench gpu` times against each other on a GPU: each must be the same work. */
const VARIANTS: [string, Record<string, string>][] = [
  ["the default (RETROMAE_WEBGPU_MATMUL=auto: the logits and their gradients in 128 × 128 tiles, dz·E split in them)", {}],
  ["128 × 128 tiles wherever both sides are a tile (RETROMAE_WEBGPU_MATMUL=tiled)", { RETROMAE_WEBGPU_MATMUL: "tiled" }],
  ["tfjs's matmul programs and the 32 × 32 split (RETROMAE_WEBGPU_MATMUL=tfjs)", { RETROMAE_WEBGPU_MATMUL: "tfjs" }],
  ["x·(Wᵀ) on the vec4 path (RETROMAE_WEBGPU_DENSE=transposed)", { RETROMAE_WEBGPU_DENSE: "transposed" }],
  ["split-K off (RETROMAE_WEBGPU_SPLIT_K=0)", { RETROMAE_WEBGPU_SPLIT_K: "0" }],
];

/** SciFact packed at 64 tokens: host data, read once and shared by every run and backend. */
let packed: Promise<PackedCorpus> | null = null;
const scifact = () => (packed ??= PackedCorpus.fromFile(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), tok, 64, { limit: 400 }));

function tinyTrainer(corpus: PackedCorpus, runDir?: string): Trainer {
  const rng = new Rng(7);
  const model = RetroMAE.create("tiny", { rng, overrides: { hiddenDropoutProb: 0, attentionProbsDropoutProb: 0 } });
  return new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 7, batchSize: 4, maxLength: 64, lr: 1e-3, warmupSteps: 1, totalSteps: 20, ...(runDir ? { runDir } : {}) });
}

/** Encoder and decoder loss of each of `steps` steps. */
async function lossesOf(t: Trainer, steps: number): Promise<number[]> {
  const losses: number[] = [];
  await t.fit({ steps, live: false, onEvent: (e) => e.type === "step" && losses.push(e.encoderLoss, e.decoderLoss) });
  return losses;
}

async function sixSteps(name: "native" | "webgpu"): Promise<{ losses: number[]; replayed: number }> {
  await use(name);
  const t = tinyTrainer(await scifact());
  const losses = await lossesOf(t, 6);
  const replayed = t.recordedSteps?.replayed ?? 0;
  t.model.dispose();
  t.dispose();
  return { losses, replayed };
}

function assertClose(got: number[], want: number[], label: string): void {
  assert.is(got.length, want.length, label);
  got.forEach((l, i) => assert.ok(Math.abs(l - want[i]) <= 1e-5 * Math.abs(want[i]), `${label}, step ${(i >> 1) + 1} ${i % 2 ? "decoder" : "encoder"} loss: ${l} vs ${want[i]}`));
}

test("the real tiny model trains on webgpu (steps replayed after the third) to the native backend's losses within 1e-5, dropout off, the same masks, with each matmul choice that bench gpu compares", async () => {
  const cpu = (await sixSteps("native")).losses;
  assert.is(cpu.length, 12);
  for (const [label, env] of VARIANTS) {
    for (const [k, v] of Object.entries(env)) process.env[k] = v;
    try {
      const gpu = await sixSteps("webgpu");
      assert.ok(gpu.replayed >= 3, `${label}: replayed ${gpu.replayed} of 6 steps`);
      assertClose(gpu.losses, cpu, `${label} on webgpu against native`);
    } finally {
      for (const k of Object.keys(env)) delete process.env[k];
    }
  }
});

test("a run checkpointed on webgpu resumes on native, and one checkpointed on native resumes on webgpu, to the uninterrupted run's losses within 1e-5 (the same data, masks and generator state)", async () => {
  await use("native");
  const corpus = await scifact();
  const whole = tinyTrainer(corpus);
  const want = await lossesOf(whole, 6);
  whole.model.dispose();
  whole.dispose();
  for (const [first, then] of [["webgpu", "native"], ["native", "webgpu"]] as const) {
    await use(first);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "webgpu-real-"));
    const a = tinyTrainer(corpus, dir);
    const losses = await lossesOf(a, 3);
    await a.saveCheckpoint();
    a.model.dispose();
    a.dispose();
    await use(then);
    const b = Trainer.resume(dir, { tokenizer: tok, data: corpus });
    losses.push(...(await lossesOf(b, 3)));
    b.model.dispose();
    b.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
    assertClose(losses, want, `3 steps on ${first}, then 3 resumed on ${then}`);
  }
});

test.run();
