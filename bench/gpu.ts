/**
 * `npm run bench -- gpu [--backend webgpu[,tensorflow]] [--configs tiny:16x128,mini:32x128,small:32x256,base:32x512]
 *                       [--steps N] [--probe-docs N|all|0] [--encode-batch 64] [--child-timeout-s S] [--rehearse]`
 *
 * Training steps and probe encoding on this project's GPU backends, with
 * PyTorch on CUDA in the same run where a python3 has torch (torchPython) and
 * `torch.cuda.is_available()`. For each configuration (preset:BATCHxLENGTH):
 *
 * - ours, per backend, in a child process of its own: full Trainer steps
 *   (collate, forward, backward, clip, AdamW) with the live chart and
 *   progress bar off, then on (`chart_overhead`: the fraction the live
 *   display adds), ms/step, tokens/s, the peak GPU memory tfjs's buffer
 *   manager holds, and [CLS] encoding docs/s over SciFact's corpus at 512
 *   tokens; on webgpu also over its first 1,024 documents with this
 *   project's inference kernels (the whole attention, GELU in the dense
 *   layer's epilogue) and with tfjs's composition instead (`fused_speedup`),
 *   and with lengths padded to a multiple of 16 (the default on webgpu) and
 *   unpadded (`padding_speedup`),
 *   and the feed-forward's matmul through tfjs's programs as the model
 *   runs it (x·Wᵀ) and with W stored transposed (tfjs-webgpu's vec4 path),
 *   the decoder's logits likewise (x·Eᵀ, on a hardware adapter), and whole
 *   steps with the dense layers as x·(Wᵀ) (RETROMAE_WEBGPU_DENSE=transposed:
 *   `ms_per_step_dense_transposed`, on a hardware adapter), with the
 *   attention's heads split and merged by transposes around batched
 *   matmuls instead of read in place (RETROMAE_WEBGPU_HEADS=split:
 *   `ms_per_step_heads_split`, on a hardware adapter) and, where the
 *   step splits matmuls along K or column sums along their rows, with
 *   neither split (RETROMAE_WEBGPU_SPLIT_K=0: `ms_per_step_without_split_k`),
 *   and with every matmul of at least a tile each way in 128 × 128 tiles
 *   (RETROMAE_WEBGPU_MATMUL=tiled: `ms_per_step_matmul_tiled`, and
 *   `*_gflops_tiled` at the two shapes) and with tfjs's programs only
 *   (RETROMAE_WEBGPU_MATMUL=tfjs: `ms_per_step_matmul_tfjs`; the default,
 *   auto, tiles the outputs of at least 128 tiles), and last, on a device
 *   of their own, with Dawn's bounds checks on (RETROMAE_WEBGPU_ROBUSTNESS=1:
 *   `ms_per_step_with_robustness`; off by default), and with every batch
 *   collated on the main thread between the steps it issues
 *   (RETROMAE_COLLATE_AHEAD=0: `ms_per_step_main_thread_collates`; by
 *   default the next step's are made on a second thread, and
 *   `steps_collated_ahead` counts the timed steps made so), and with Node
 *   waiting for the GPU on a 1 ms timer between Dawn's ticks instead of its
 *   busy loop (RETROMAE_WEBGPU_POLL=timer: `ms_per_step_timer_poll`; the
 *   default on a software adapter only);
 *   on webgpu the compute
 *   dispatches per step, and the step time with every step issued through
 *   tfjs (recordSteps: false) beside the default replayed steps
 *   (`npm run bench -- host` gives the host's time for
 *   as many, with no GPU work: near it, a step is bound by the CPU); and
 *   one more step profiled (Trainer.profile: every dispatch timed on the
 *   GPU), its GPU time by kind of work and its top kernels, with
 *   `kernels_share_of_step`, the kernels' sum over a replayed step's wall
 *   time (what is left is barriers, idle time and the host);
 * - PyTorch (bench/reference/retromae_bench.py --device cuda) on the same
 *   batches: fp32 with TF32 off (the same arithmetic) and with TF32 matmuls
 *   (its fast default), each with the encoder's logits at every position
 *   (HF's BertForMaskedLM) and at the masked positions only (the same work
 *   as ours); encoding through encode_bench.py --device cuda.
 *
 * On a software adapter (SwiftShader) it runs all the same and every row
 * says `not_gpu: true`: those are not GPU figures. It skips there the parts
 * that only a GPU makes worth timing (the A/B steps, the logits' layouts);
 * `--rehearse` runs them anyway, to check that each runs (on Dawn's Null
 * backend, `RETROMAE_WEBGPU_ADAPTER=null-backend`, the whole run takes a
 * minute and its figures mean nothing). A child stopped by
 * --child-timeout-s still gives the row it had measured, with `failed`.
 * Prints JSON lines, then the whole table as one JSON array.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "../lib/engine/tf";
import { backend, use } from "../lib/engine/backend";
import { Rng } from "../lib/engine/rng";
import { loadBeir } from "../lib/data/beir";
import { ATTENTION, DENSE_GELU } from "../lib/engine/fused";
import { hfConfig } from "../lib/model/checkpoint";
import { bertConfig, PresetName } from "../lib/model/config";
import { RetroMAE } from "../lib/model/retromae";
import { EncodeOptions, encodeTexts, WEBGPU_PAD_MULTIPLE } from "../lib/probe/encode";
import { makeProbeSet } from "../lib/probe/probe";
import { BertTokenizer } from "../lib/text/tokenizer";
import { PackedCorpus } from "../lib/train/data";
import { Trainer } from "../lib/train/trainer";
import { bytesHeldByReplays } from "../lib/engine/webgpu/replay";
import { takesTiledMatMul } from "../lib/engine/webgpu/matmul";
import { countDispatches } from "../lib/engine/webgpu/profile";
import { withDawnPolling } from "../lib/engine/webgpu/poll";
import { collateAhead } from "../lib/masking/ahead";
import { collateTrainingBatches, emit, NO_TORCH, option, recordBatches, runTorch, SHARED_DATA, torchPython, withEnv, writeEncodeBatches } from "./common";

const DEFAULT_CONFIGS = "tiny:16x128,mini:32x128,small:32x256,base:32x512";

interface Config {
  preset: PresetName;
  batch: number;
  seq: number;
}

function parseConfigs(spec: string): Config[] {
  return spec.split(",").map((c) => {
    const m = /^(\w+):(\d+)x(\d+)$/.exec(c.trim());
    if (!m) throw new Error(`--configs takes preset:BATCHxLENGTH entries, e.g. tiny:16x128; got "${c}".`);
    return { preset: m[1] as PresetName, batch: Number(m[2]), seq: Number(m[3]) };
  });
}

/** Which GPU PyTorch sees, or why it cannot run there. */
function torchCuda(): { device: string } | { skipped: string } {
  const py = torchPython();
  if (!py) return { skipped: NO_TORCH };
  const r = spawnSync(py, ["-c", "import torch, json; print(json.dumps({'cuda': torch.cuda.is_available(), 'name': torch.cuda.get_device_name() if torch.cuda.is_available() else None}))"], { encoding: "utf8" });
  if (r.status !== 0) return { skipped: `${py} failed to ask torch for CUDA: ${(r.stderr || "").trim().split("\n").pop()}` };
  const j = JSON.parse(r.stdout.trim().split("\n").pop()!) as { cuda: boolean; name: string | null };
  return j.cuda ? { device: j.name! } : { skipped: "torch.cuda.is_available() is false on this machine" };
}

/** SciFact's documents to encode for --probe-docs: "all", or the first N of the probe's set. */
function probeDocTexts(probeDocs: string): string[] {
  const set = makeProbeSet(loadBeir(path.join(SHARED_DATA, "beir-scifact")), { distractors: "all" });
  return probeDocs === "all" ? set.docTexts : set.docTexts.slice(0, Number(probeDocs));
}

/** --encode-batch: documents per encoding batch (default 64), checked. */
function encodeBatchOption(args: string[]): number {
  const encodeBatch = Number(option(args, "encode-batch") ?? 64);
  if (!(Number.isInteger(encodeBatch) && encodeBatch >= 1)) throw new Error(`--encode-batch takes a whole number of documents ≥ 1; got "${option(args, "encode-batch")}".`);
  return encodeBatch;
}

/**
 * PyTorch's inputs for one configuration where no child of ours saved them:
 * `steps` training batches (collateTrainingBatches: the trainer's collator
 * and batch stream, static shapes, over the blocks a child packs) and the
 * documents to encode (as a child on a GPU would: --probe-docs, default
 * all, in --encode-batch batches). Returns what it collated.
 */
async function saveTorchInputs(c: Config, steps: number, probeDocs: string, encodeBatch: number, batchFile: string, encodeFile: string): Promise<string[]> {
  const made: string[] = [];
  const tok = BertTokenizer.bertBaseUncased();
  if (!fs.existsSync(batchFile)) {
    const corpus = await PackedCorpus.fromFile(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), tok, c.seq, { limit: 400 });
    collateTrainingBatches(batchFile, tok, corpus, c.batch, c.seq, steps);
    made.push("the training batches");
  }
  if (!fs.existsSync(encodeFile) && probeDocs !== "0") {
    writeEncodeBatches(encodeFile, probeDocTexts(probeDocs), tok, encodeBatch, 512, WEBGPU_PAD_MULTIPLE); // padded as webgpu's encoding pads them
    made.push("the documents");
  }
  return made;
}

/** What tfjs's buffer pool holds, plus the buffers a replayed step holds outside it. */
function gpuBytes(): number {
  const m = tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU?: number };
  return (m.numBytesAllocatedInGPU ?? 0) + bytesHeldByReplays();
}

/**
 * Encoding docs/s over `texts` in each of two modes, alternating twice (a
 * warm-up batch before each mode's first run, for its shaders): the best of
 * each mode's two runs. `enter` switches to a mode; `extra` adds its options.
 */
async function encodingRates<M extends string>(model: RetroMAE, tok: BertTokenizer, texts: string[], batchSize: number, modes: readonly [M, M], enter: (m: M) => void, extra: (m: M) => EncodeOptions = () => ({})): Promise<Record<M, number>> {
  const rate = new Map<M, number[]>(modes.map((m) => [m, []]));
  for (const mode of [...modes, ...modes]) {
    enter(mode);
    const options = { batchSize, maxLength: 512, progress: false, ...extra(mode) };
    if (rate.get(mode)!.length === 0) await encodeTexts(model, tok, texts.slice(0, batchSize), options); // shaders
    const t0 = performance.now();
    await encodeTexts(model, tok, texts, options);
    rate.get(mode)!.push(texts.length / ((performance.now() - t0) / 1000));
  }
  return Object.fromEntries([...rate].map(([m, xs]) => [m, Math.max(...xs)])) as Record<M, number>;
}

/**
 * Encoding docs/s with this project's inference kernels on webgpu (the whole
 * attention, the dense layer with GELU in its epilogue) and with tfjs's
 * composition in their place: which is faster on this GPU. And with lengths
 * padded to a multiple of 16 (the default on webgpu: batches of one shape
 * reuse the buffers of the batch before and are queued before its read) and
 * unpadded (padToMultipleOf 1): whether that pays for its padding here.
 */
async function encodingChoices(model: RetroMAE, tok: BertTokenizer, texts: string[], batchSize: number): Promise<Record<string, number>> {
  const kernels = [ATTENTION, DENSE_GELU].map((k) => tf.getKernel(k, "webgpu")).filter((k): k is tf.KernelConfig => !!k);
  let fused: Record<"tfjs" | "fused", number>;
  try {
    fused = await encodingRates(model, tok, texts, batchSize, ["tfjs", "fused"], (mode) => {
      for (const k of kernels) {
        const has = !!tf.getKernel(k.kernelName, "webgpu");
        if (mode === "tfjs" && has) tf.unregisterKernel(k.kernelName, "webgpu");
        if (mode === "fused" && !has) tf.registerKernel(k);
      }
    });
  } finally {
    for (const k of kernels) if (!tf.getKernel(k.kernelName, "webgpu")) tf.registerKernel(k);
  }
  const pad = await encodingRates(model, tok, texts, batchSize, ["unpadded", "padded"], () => {}, (m) => (m === "unpadded" ? { padToMultipleOf: 1 } : {}));
  return {
    fused_check_docs: texts.length,
    docs_per_s_fused: +fused.fused.toFixed(1),
    docs_per_s_tfjs_attention_and_gelu: +fused.tfjs.toFixed(1),
    fused_speedup: +(fused.fused / fused.tfjs).toFixed(3),
    [`docs_per_s_padded_to_${WEBGPU_PAD_MULTIPLE}`]: +pad.padded.toFixed(1),
    docs_per_s_unpadded: +pad.unpadded.toFixed(1),
    padding_speedup: +(pad.padded / pad.unpadded).toFixed(3),
  };
}

/**
 * GFLOP/s of a matmul x [rows, H] · Wᵀ (W [out, H], as HF stores weights
 * and the tied word embeddings) as the model runs it, and with W stored
 * transposed (x·W): tfjs-webgpu takes its vec4 matmul only when B is not
 * transposed, so this says what storing the weights transposed would gain
 * at this shape.
 */
async function denseLayoutCheck(rows: number, H: number, out: number): Promise<{ as_model: number; stored_transposed: number; tiled: number | null }> {
  const [x, W] = [tf.randomNormal([rows, H], 0, 1, "float32", 1), tf.randomNormal([out, H], 0, 1, "float32", 2)];
  const Wt = tf.transpose(W);
  const gflops = async (f: () => tf.Tensor) => {
    const once = async (reps: number) => {
      const t0 = performance.now();
      for (let r = 0; r < reps; r++) {
        const c = f();
        if (r === reps - 1) {
          const corner = tf.slice(c, [0, 0], [1, 1]);
          await corner.data(); // waits for every matmul queued before it
          corner.dispose();
        }
        c.dispose();
      }
      return performance.now() - t0;
    };
    await once(2); // shaders
    const ms = Math.min(await once(10), await once(10)) / 10;
    return +((2 * rows * H * out) / (ms / 1000) / 1e9).toFixed(1);
  };
  // tfjs's own programs (RETROMAE_WEBGPU_MATMUL=tfjs): the default would take the tiled one for a large output
  const [asModel, transposed] = await withEnv("RETROMAE_WEBGPU_MATMUL", "tfjs", async () => [await gflops(() => tf.matMul(x, W, false, true)), await gflops(() => tf.matMul(x, Wt))]);
  // (null where the shape is under a tile, and tfjs's program would run)
  const tiled = await withEnv("RETROMAE_WEBGPU_MATMUL", "tiled", async () => (takesTiledMatMul(1, rows, out) ? gflops(() => tf.matMul(x, W, false, true)) : null));
  tf.dispose([x, W, Wt]);
  return { as_model: asModel, stored_transposed: transposed, tiled };
}

/** ms per step of a trainer over `steps`, after `warmup` steps (shaders, the pool, the recording); the trainer is disposed. */
async function msPerStep(t: Trainer, warmup: number, steps: number): Promise<number> {
  await t.fit({ steps: warmup, live: false });
  const r = await t.fit({ steps, live: false });
  t.dispose();
  return +(r.totalMs / steps).toFixed(1);
}

/**
 * One configuration on one backend, in this process. The row is printed
 * again after each part (training, its profile, encoding, the comparisons),
 * each time with everything measured so far, so a child stopped by
 * --child-timeout-s still leaves what it measured (`incomplete` then says
 * where it stopped).
 */
export async function benchGpuOne(args: string[]): Promise<void> {
  const preset = option(args, "preset") as PresetName;
  const [B, L, steps] = [Number(option(args, "batch")), Number(option(args, "seq")), Number(option(args, "steps") ?? 10)];
  const choice = await use(option(args, "backend") ?? "webgpu");
  const info = backend.info();
  const software = info.webgpu?.software ?? choice.device !== "gpu";
  // --rehearse runs the parts a software adapter skips too (on Dawn's Null backend, in seconds): to check that each runs
  const rehearse = args.includes("--rehearse");
  const skipsParts = software && !rehearse;
  const webgpu = choice.backend === "webgpu";
  const tok = BertTokenizer.bertBaseUncased();
  const corpus = await PackedCorpus.fromFile(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), tok, L, { limit: 400 });
  const rng = new Rng(1);
  const model = RetroMAE.create(preset, { rng });
  const row: Record<string, unknown> = {
    preset,
    backend: choice.backend,
    adapter: info.webgpu ? `${info.webgpu.description || info.webgpu.device} (${info.webgpu.backend})` : choice.package,
    not_gpu: software,
    ...(rehearse ? { rehearsal: "every part run to check that it runs; on this adapter the figures mean nothing" } : {}),
    batch: B,
    seq: L,
    steps,
  };
  // kernel switches set for the whole run (the comparisons below set each in turn)
  const switches = ["RETROMAE_WEBGPU_MATMUL", "RETROMAE_WEBGPU_SPLIT_K", "RETROMAE_WEBGPU_DENSE", "RETROMAE_WEBGPU_HEADS", "RETROMAE_WEBGPU_ROBUSTNESS"].filter((k) => process.env[k]);
  if (switches.length) row.env = Object.fromEntries(switches.map((k) => [k, process.env[k]]));
  const parts = ["training", "profile", "encoding", "through tfjs", "main thread collates", "dense transposed", "heads split", "split K off", "tiled matmul", "matmul layouts", "bounds checks on"];
  const done = (part: string, measured: Record<string, unknown>) => {
    Object.assign(row, measured);
    const next = parts[parts.indexOf(part) + 1];
    console.log(JSON.stringify(next ? { ...row, incomplete: `stopped before ${next}` } : row));
  };
  const newTrainer = (extra: Partial<ConstructorParameters<typeof Trainer>[0]> = {}) =>
    new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 1, batchSize: B, maxLength: L, totalSteps: 2 * steps + 2, ...extra });

  // training: replayed steps (the default on webgpu) with the live display off, then on
  const trainer = newTrainer();
  let peak = 0;
  const sample = () => (peak = Math.max(peak, gpuBytes()));
  await trainer.fit({ steps: 4, live: false, onEvent: sample }); // warm-up: shader compiles, buffer pool, the step recorded (steps 3 and 4 compared)
  await collateAhead().whenReady(); // the timed steps' batches made on the collating thread from the first (lib/masking/ahead.ts)
  const ahead0 = trainer.collatedAhead.steps;
  const recording = recordBatches(trainer);
  let tokens = 0;
  const dispatches = webgpu ? countDispatches((tf.backend() as unknown as { device: GPUDevice }).device) : null;
  const d0 = dispatches?.() ?? 0;
  const off = await trainer.fit({ steps, live: false, onEvent: (e) => (sample(), e.type === "step" && (tokens += e.tokens)) });
  const perStep = dispatches ? Math.round((dispatches() - d0) / steps) : null;
  const madeAhead = trainer.collatedAhead.steps - ahead0;
  recording.stop();
  const on = await trainer.fit({ steps, live: true, onEvent: sample });
  recording.save(option(args, "save-batch"));
  const recorded = trainer.recordedSteps;
  done("training", {
    ms_per_step: +(off.totalMs / steps).toFixed(1),
    tokens_per_s: +(tokens / (off.totalMs / 1000)).toFixed(1),
    ms_per_step_live: +(on.totalMs / steps).toFixed(1),
    chart_overhead: +(on.totalMs / off.totalMs - 1).toFixed(4),
    ...(recorded ? { recorded_steps: recorded, steps_collated_ahead: madeAhead } : {}),
    ...(perStep !== null ? { dispatches_per_step: perStep } : {}),
    peak_gpu_mb: Math.round(peak / 2 ** 20),
  });

  // one more step with every dispatch timed on the GPU: where the step's time goes
  let profile: Record<string, unknown> = {};
  let splitK = false; // whether the step splits matmuls along K or column sums along their rows (matmul.ts splitKParts, reduce.ts columnSumParts)
  if (recorded?.replayed && (tf.backend() as unknown as { device: GPUDevice }).device.features.has("timestamp-query")) {
    const p = await trainer.profile();
    splitK = p.kernels.some((k) => /MatMulSplitK|_splitK$|ColumnSum_\w+Runs$/.test(k.kernel));
    profile = {
      profile: {
        gpu_ms: p.gpuMs,
        // of a replayed step's wall time: the rest is between dispatches (barriers, idle, the host)
        kernels_share_of_step: +(p.gpuMs / (off.totalMs / steps)).toFixed(3),
        categories: p.categories,
        top_kernels: p.kernels.slice(0, 12).map(({ inputs, ...k }) => ({ ...k, ...(inputs ? { inputs } : {}) })),
      },
    };
  }
  trainer.dispose();
  done("profile", profile);

  const probeDocs = option(args, "probe-docs") ?? (software ? "0" : "all");
  const encodeBatch = encodeBatchOption(args);
  let probe: Record<string, unknown> = { probe: "skipped (--probe-docs 0; a software adapter encodes SciFact's 5,183 documents in hours)" };
  if (probeDocs !== "0") {
    const texts = probeDocTexts(probeDocs);
    await encodeTexts(model, tok, texts.slice(0, encodeBatch), { batchSize: encodeBatch, maxLength: 512, progress: false }); // warm-up
    const t0 = performance.now();
    await encodeTexts(model, tok, texts, { batchSize: encodeBatch, maxLength: 512, progress: false });
    const s = (performance.now() - t0) / 1000;
    probe = { probe_docs: texts.length, encode_batch: encodeBatch, docs_per_s: +(texts.length / s).toFixed(1) };
    done("encoding", probe); // before the inference kernels' comparison, which takes as long again
    if (webgpu) Object.assign(probe, await encodingChoices(model, tok, texts.slice(0, 1024), encodeBatch));
    const encodeFile = option(args, "save-encode");
    if (encodeFile) writeEncodeBatches(encodeFile, texts, tok, encodeBatch, 512, webgpu ? WEBGPU_PAD_MULTIPLE : 1);
  }
  done("encoding", probe);

  // the same steps with every one issued through tfjs: what replaying recorded steps gains on this GPU
  // (not on a software adapter: its compute, not the host, bounds a step there, at seconds a step)
  const onGpu = !!recorded && !skipsParts;
  const skipped = "skipped on a software adapter";
  const throughTfjs = onGpu ? { ms_per_step_through_tfjs: await msPerStep(newTrainer({ recordSteps: false }), 2, steps) } : recorded ? { ms_per_step_through_tfjs: skipped } : {};
  done("through tfjs", throughTfjs);

  // every step's batches collated on the main thread, between the steps it issues (RETROMAE_COLLATE_AHEAD=0)
  const mainThread = onGpu ? { ms_per_step_main_thread_collates: await withEnv("RETROMAE_COLLATE_AHEAD", "0", () => msPerStep(newTrainer(), 4, steps)) } : recorded ? { ms_per_step_main_thread_collates: skipped } : {};
  done("main thread collates", mainThread);

  // Node waiting for the GPU on a 1 ms timer between Dawn's ticks (RETROMAE_WEBGPU_POLL=timer, the default on a
  // software adapter only) instead of Dawn's busy loop: what the loop's core buys on this GPU (lib/engine/webgpu/poll.ts)
  const timerPoll = onGpu ? { ms_per_step_timer_poll: await withDawnPolling("timer", () => msPerStep(newTrainer(), 4, steps)) } : recorded ? { ms_per_step_timer_poll: skipped } : {};
  done("timer poll", timerPoll);

  // the dense layers as x·(Wᵀ) (tfjs's vec4 matmul, RETROMAE_WEBGPU_DENSE=transposed), replayed as above
  const transposed = onGpu ? { ms_per_step_dense_transposed: await withEnv("RETROMAE_WEBGPU_DENSE", "transposed", () => msPerStep(newTrainer(), 4, steps)) } : recorded ? { ms_per_step_dense_transposed: skipped } : {};
  done("dense transposed", transposed);

  // the attention's heads split and merged by transposes around batched matmuls (RETROMAE_WEBGPU_HEADS=split) instead of read in place
  const headsSplit = onGpu ? { ms_per_step_heads_split: await withEnv("RETROMAE_WEBGPU_HEADS", "split", () => msPerStep(newTrainer(), 4, steps)) } : recorded ? { ms_per_step_heads_split: skipped } : {};
  done("heads split", headsSplit);

  // the matmuls split along K (few output tiles, long K) and the column sums split along their rows run unsplit instead (RETROMAE_WEBGPU_SPLIT_K=0)
  const unsplit = onGpu && splitK ? { ms_per_step_without_split_k: await withEnv("RETROMAE_WEBGPU_SPLIT_K", "0", () => msPerStep(newTrainer(), 4, steps)) } : {};
  done("split K off", unsplit);

  // every matmul of at least a tile each way in 128 × 128 tiles (RETROMAE_WEBGPU_MATMUL=tiled, ./matmul.ts), and none (tfjs)
  const tiled = onGpu ? { ms_per_step_matmul_tiled: await withEnv("RETROMAE_WEBGPU_MATMUL", "tiled", () => msPerStep(newTrainer(), 4, steps)) } : recorded ? { ms_per_step_matmul_tiled: skipped } : {};
  const tfjsOnly = onGpu ? { ms_per_step_matmul_tfjs: await withEnv("RETROMAE_WEBGPU_MATMUL", "tfjs", () => msPerStep(newTrainer(), 4, steps)) } : recorded ? { ms_per_step_matmul_tfjs: skipped } : {};
  model.dispose();
  done("tiled matmul", { ...tiled, ...tfjsOnly });

  let layout: Record<string, unknown> = {};
  if (webgpu) {
    const H = bertConfig(preset).hiddenSize;
    // the feed-forward's first matmul over every token, and the decoder's logits over its label slots
    const dense = await denseLayoutCheck(B * L, H, 4 * H);
    layout = { dense_gflops_x_wt: dense.as_model, dense_gflops_x_w_stored_transposed: dense.stored_transposed, ...(dense.tiled !== null ? { dense_gflops_tiled: dense.tiled } : {}) };
    if (!skipsParts) {
      // (on a software adapter, 44 matmuls over the vocabulary take minutes)
      const logits = await denseLayoutCheck(B * (L - 2), H, tok.vocab.size);
      Object.assign(layout, { logits_gflops_x_et: logits.as_model, logits_gflops_x_e_stored_transposed: logits.stored_transposed, ...(logits.tiled !== null ? { logits_gflops_tiled: logits.tiled } : {}) });
    }
  }
  done("matmul layouts", layout);

  // Dawn's bounds checks on (RETROMAE_WEBGPU_ROBUSTNESS=1, on a device of its own, so last): what their
  // being off, the default, gains on this GPU (a clamp on every index, in every matmul's inner loop)
  let checked: Record<string, unknown> = {};
  if (webgpu && onGpu && process.env.RETROMAE_WEBGPU_ROBUSTNESS !== "1") {
    const ms = await withEnv("RETROMAE_WEBGPU_ROBUSTNESS", "1", async () => {
      await use("webgpu"); // a new device: the model above was disposed with the old one's buffers
      const m = RetroMAE.create(preset, { rng: new Rng(1) });
      try {
        return await msPerStep(newTrainer({ model: m }), 4, steps);
      } finally {
        m.dispose();
      }
    });
    checked = { ms_per_step_with_robustness: ms };
  } else if (recorded && !onGpu) checked = { ms_per_step_with_robustness: skipped };
  done("bounds checks on", checked);
}

/**
 * What a gpu-one child measured: it prints its row after each part, each
 * holding everything so far, so the last whole line is all of it (a line
 * cut off by a kill is passed over). `complete` is false where the child
 * stopped before its last part (the row says where: `incomplete`) or printed
 * no row.
 */
export function lastChildRow(stdout: string): { row: Record<string, unknown> | null; complete: boolean } {
  const lines = stdout.trim().split("\n").filter((l) => l.startsWith("{"));
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const row = JSON.parse(lines[i]) as Record<string, unknown>;
      return { row, complete: !("incomplete" in row) };
    } catch {
      // cut off: the line before holds less, but whole
    }
  }
  return { row: null, complete: false };
}

export async function benchGpu(args: string[]): Promise<void> {
  const configs = parseConfigs(option(args, "configs") ?? DEFAULT_CONFIGS);
  const backends = (option(args, "backend") ?? "webgpu").split(",");
  const steps = option(args, "steps") ?? "10";
  const probeDocs = option(args, "probe-docs");
  const encodeBatch = encodeBatchOption(args); // checked here, before any child starts
  // seconds one backend's child may take for one configuration (its row then says so, and PyTorch still runs)
  const childTimeout = option(args, "child-timeout-s") ? Number(option(args, "child-timeout-s")) : null;
  if (childTimeout !== null && !(childTimeout > 0)) throw new Error(`--child-timeout-s takes a number of seconds above 0; got "${option(args, "child-timeout-s")}".`);
  const cuda = torchCuda();
  const table: Record<string, unknown>[] = [];
  for (const c of configs) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-gpu-"));
    const batchFile = path.join(dir, "batch.safetensors");
    const encodeFile = path.join(dir, "encode.safetensors");
    const rows: Record<string, unknown>[] = [];
    for (const b of backends) {
      const started = performance.now();
      const child = spawnSync(
        process.execPath,
        ["-r", "ts-node/register/transpile-only", path.join(__dirname, "index.ts"), "gpu-one", "--preset", c.preset, "--batch", String(c.batch), "--seq", String(c.seq), "--steps", steps, "--backend", b,
          // the batches PyTorch runs: saved by the first child that gets that far
          ...(fs.existsSync(batchFile) ? [] : ["--save-batch", batchFile]), ...(fs.existsSync(encodeFile) ? [] : ["--save-encode", encodeFile]), ...(probeDocs ? ["--probe-docs", probeDocs] : []), ...(args.includes("--rehearse") ? ["--rehearse"] : []), ...(option(args, "encode-batch") ? ["--encode-batch", option(args, "encode-batch")!] : [])],
        { encoding: "utf8", maxBuffer: 1 << 24, ...(childTimeout ? { timeout: childTimeout * 1000, killSignal: "SIGKILL" as const } : {}) },
      );
      const { row, complete } = lastChildRow(child.stdout ?? "");
      if (child.status !== 0 || !complete) {
        const why = child.signal === "SIGKILL" && childTimeout ? `stopped after --child-timeout-s ${childTimeout}` : (child.stderr || "").trim().split("\n").pop();
        rows.push({ bench: "gpu", engine: b, preset: c.preset, batch: c.batch, seq: c.seq, ...row, failed: why });
        process.stderr.write(`bench gpu: ${c.preset} ${c.batch}x${c.seq} on ${b} failed after ${((performance.now() - started) / 1000).toFixed(0)} s: ${why}${row ? `; measured before: ${JSON.stringify(row)}` : ""}\n`);
        continue;
      }
      rows.push({ bench: "gpu", engine: b, ...row });
      // as soon as it is measured, in case a later step of the run is stopped
      process.stderr.write(`bench gpu: ${c.preset} ${c.batch}x${c.seq} on ${b}: ${JSON.stringify(row)}\n`);
    }
    // Where ours failed before saving them (no adapter, a lost device), PyTorch still runs, on
    // batches collated here the same way: a GPU node's figures are then PyTorch's at least.
    const collatedHere = "device" in cuda ? await saveTorchInputs(c, Number(steps), probeDocs ?? "all", encodeBatch, batchFile, encodeFile) : [];
    if ("device" in cuda && fs.existsSync(batchFile)) {
      const cfg = JSON.stringify(hfConfig(bertConfig(c.preset)));
      const files = [batchFile, ...Array.from({ length: Number(steps) }, (_, i) => `${batchFile}.${i + 1}`).filter((f) => fs.existsSync(f))].join(",");
      const torchRows: Record<string, unknown>[] = [];
      for (const tf32 of [false, true]) {
        for (const sameWork of [false, true]) {
          const r = runTorch("retromae_bench.py", [cfg, files, "--steps", steps, "--adamw", "--device", "cuda", ...(tf32 ? ["--tf32"] : []), ...(sameWork ? ["--same-work"] : [])], process.env);
          torchRows.push({ bench: "gpu", engine: `torch_cuda_${tf32 ? "tf32" : "fp32"}${sameWork ? "_same_work" : ""}`, preset: c.preset, batch: c.batch, seq: c.seq, ...r, ...(collatedHere.length ? { inputs: `${collatedHere.join(" and ")} collated by bench gpu itself: ours saved none` } : {}) });
        }
      }
      if (fs.existsSync(encodeFile)) {
        for (const tf32 of [false, true]) {
          const r = runTorch("encode_bench.py", [cfg, encodeFile, "--device", "cuda", ...(tf32 ? ["--tf32"] : [])], process.env);
          const row = torchRows.find((t) => t.engine === `torch_cuda_${tf32 ? "tf32" : "fp32"}`)!;
          Object.assign(row, { probe_docs_per_s: r.docs_per_s, probe_docs_per_s_same_work: r.docs_per_s_same_work });
        }
      }
      const rate = (name: string) => (torchRows.find((t) => t.engine === name) as { tokens_per_s: number }).tokens_per_s;
      for (const r of rows) {
        if (typeof r.tokens_per_s !== "number") continue;
        r.ratio_vs_torch_fp32 = +(r.tokens_per_s / rate("torch_cuda_fp32")).toFixed(3);
        r.ratio_vs_torch_fp32_same_work = +(r.tokens_per_s / rate("torch_cuda_fp32_same_work")).toFixed(3);
        r.ratio_vs_torch_tf32_same_work = +(r.tokens_per_s / rate("torch_cuda_tf32_same_work")).toFixed(3);
      }
      rows.push(...torchRows);
    } else {
      for (const r of rows) r.torch = `skipped: ${"skipped" in cuda ? cuda.skipped : "no batch was saved"}`;
    }
    fs.rmSync(dir, { recursive: true, force: true });
    for (const r of rows) emit(r);
    table.push(...rows);
  }
  console.log(JSON.stringify(table, null, 1));
}
