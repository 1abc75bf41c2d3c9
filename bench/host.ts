/**
 * `npm run bench -- host [--presets tiny,mini,small,base] [--batch 16 --seq 128] [--steps N]`
 *
 * The host's share of a webgpu training step: what the CPU spends issuing
 * it (tfjs's ops and autodiff, shader keys, uniforms, bind groups, Dawn's
 * validation and command encoding), with no GPU work at all. It runs full
 * Trainer steps on Dawn's Null backend, a device that validates and records
 * every command and executes none, so a step's time is its host time: a
 * floor under webgpu's step on any GPU driven from this CPU (a real driver
 * adds its own cost per dispatch). It also counts the compute dispatches.
 *
 * Dawn's Null device holds 512 MiB, so the model keeps each preset's layers,
 * heads and vocabulary with 8 dimensions per head (hidden 8·heads,
 * intermediate 4·hidden) at batch 2 × 32: the same ops and dispatches as the
 * preset, whose count does not depend on the widths.
 *
 * The reference, in the same run: PyTorch's training step (forward,
 * backward, clip_grad_norm_, AdamW with foreach as on CUDA) on its `meta`
 * device, which runs every op's dispatch and autograd and computes nothing:
 * PyTorch's own host floor for the preset at --batch × --seq (default
 * 16 × 128; on meta the size costs nothing). A CUDA launch adds a few
 * microseconds per kernel on top of it. The encoder's logits are at every
 * position there (masked positions need the data, which meta does not have).
 *
 * Each preset runs twice: with recorded steps replayed (the trainer's
 * default on webgpu: lib/engine/webgpu/replay.ts), and with every step
 * issued through tfjs (recordSteps: false).
 *
 * The collator's share is measured apart, at --batch × --seq (the steps
 * above collate 2 × 32): the trainer's masking of a batch of SciFact's
 * packed blocks, padded to the length as on webgpu. It runs on the host
 * before each step, whatever the GPU, so a step's host floor at that size
 * is the preset's host_ms_per_step plus collate_ms_per_batch.
 *
 * Prints JSON lines (one per preset and engine), then the table.
 */
import * as path from "path";
import * as fs from "fs";
import * as os from "os";
import { performance as perfHooks } from "perf_hooks";
import * as tf from "../lib/engine/tf";
import { use } from "../lib/engine/backend";
import { Rng } from "../lib/engine/rng";
import { NULL_ADAPTER } from "../lib/engine/webgpu/dawn";
import { countDispatches } from "../lib/engine/webgpu/profile";
import { hfConfig } from "../lib/model/checkpoint";
import { bertConfig, PresetName } from "../lib/model/config";
import { RetroMAE } from "../lib/model/retromae";
import { BertTokenizer } from "../lib/text/tokenizer";
import { PackedCorpus } from "../lib/train/data";
import { Trainer } from "../lib/train/trainer";
import { RetroMAECollator } from "../lib/masking/collator";
import { collateAhead } from "../lib/masking/ahead";
import { loadBeir } from "../lib/data/beir";
import { saveBatch } from "../lib/masking/batch-io";
import { emit, NO_TORCH, option, runTorch, SHARED_DATA, torchPython } from "./common";

export async function benchHost(args: string[]): Promise<void> {
  const presets = (option(args, "presets") ?? "tiny,mini,small,base").split(",") as PresetName[];
  const steps = Number(option(args, "steps") ?? 20);
  const [B, L] = [Number(option(args, "batch") ?? 16), Number(option(args, "seq") ?? 128)];
  process.env.RETROMAE_WEBGPU_ADAPTER = NULL_ADAPTER;
  await use("webgpu");
  const dispatches = countDispatches((tf.backend() as unknown as { device: GPUDevice }).device);
  const tok = BertTokenizer.bertBaseUncased();
  const corpus = await PackedCorpus.fromFile(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), tok, 32, { limit: 400 });
  const py = torchPython();
  // whole abstracts: most fill --seq tokens
  const texts = [...loadBeir(path.join(SHARED_DATA, "beir-scifact")).corpus.values()].map((d) => d.text).filter((t) => t.length > 8 * L);
  const table: Record<string, unknown>[] = [collatorRow(tok, texts, B, L, Math.max(steps, 20))];
  emit(table[0]);
  table.push(await aheadRow(tok, texts, B, L, Math.max(steps, 50)));
  emit(table[1]);
  for (const preset of presets) {
    const cfg = bertConfig(preset);
    const narrow = { hiddenSize: 8 * cfg.numAttentionHeads, intermediateSize: 32 * cfg.numAttentionHeads };
    const rows: Record<string, unknown>[] = [];
    // recorded steps replayed (the default on webgpu), then every step through tfjs
    for (const recordSteps of [true, false]) {
      const rng = new Rng(1);
      const model = RetroMAE.create(preset, { rng, overrides: narrow });
      const trainer = new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 1, batchSize: 2, maxLength: 32, totalSteps: steps + 5, recordSteps });
      await trainer.fit({ steps: 4, live: false }); // shaders, the pool, the recording
      const [d0, c0, t0] = [dispatches(), process.cpuUsage(), performance.now()];
      await trainer.fit({ steps, live: false });
      const ms = (performance.now() - t0) / steps;
      const cpu = process.cpuUsage(c0);
      const perStep = (dispatches() - d0) / steps;
      const recorded = trainer.recordedSteps;
      trainer.dispose();
      model.dispose();
      rows.push({
        bench: "host",
        engine: `webgpu on Dawn's Null backend, ${recordSteps ? "recorded steps replayed" : "every step through tfjs"}`,
        preset,
        layers: cfg.numHiddenLayers,
        heads: cfg.numAttentionHeads,
        hidden: narrow.hiddenSize,
        batch: 2,
        seq: 32,
        steps,
        host_ms_per_step: +ms.toFixed(2),
        cpu_ms_per_step: +((cpu.user + cpu.system) / 1000 / steps).toFixed(2),
        dispatches_per_step: Math.round(perStep),
        us_per_dispatch: +((ms * 1000) / perStep).toFixed(2),
        ...(recordSteps ? { recorded_steps: recorded } : {}),
      });
    }
    let torchRow: Record<string, unknown>;
    if (!py) torchRow = { bench: "host", engine: "torch meta", preset, skipped: NO_TORCH };
    else {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-host-"));
      const file = path.join(dir, "batch.safetensors");
      saveBatch(file, new RetroMAECollator({ tokenizer: tok, rng: new Rng(2), maxLength: L }).collate(texts.slice(0, B)));
      try {
        const run = (extra: string[]) => runTorch("retromae_bench.py", [JSON.stringify(hfConfig(cfg)), file, "--steps", String(steps), "--device", "meta", ...extra], process.env);
        const [step, fb] = [run(["--adamw"]), run([])];
        torchRow = { bench: "host", engine: "torch meta", preset, batch: B, seq: L, host_ms_per_step: step.ms_per_step, host_ms_forward_backward: fb.ms_per_step, torch: step.torch };
        for (const r of rows) r.ratio_vs_torch_host = +((step.ms_per_step as number) / (r.host_ms_per_step as number)).toFixed(3);
      } catch (err) {
        torchRow = { bench: "host", engine: "torch meta", preset, failed: (err as Error).message };
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
    rows.forEach((r) => emit(r));
    emit(torchRow);
    table.push(...rows, torchRow);
  }
  console.log(JSON.stringify(table, null, 1));
}

/**
 * The collating thread (lib/masking/ahead.ts): trainer steps at B × L with
 * the next step's batches made on it while a step is issued, and with the
 * main thread collating each step (RETROMAE_COLLATE_AHEAD=0), alternating,
 * seven fits of `steps` each way. The narrow tiny at micro-batches of 8 × L
 * (gradAccumulation B / 8: Dawn's Null device holds 512 MiB, and a 16 × 128
 * micro-batch's decoder logits alone take 250 MB), so each step collates
 * B × L tokens. The medians, and the main thread's busy share
 * (eventLoopUtilization: what bounds a step on a GPU that keeps up).
 */
async function aheadRow(tok: BertTokenizer, texts: string[], B: number, L: number, steps: number): Promise<Record<string, unknown>> {
  const corpus = PackedCorpus.fromTexts(texts.slice(0, 400), tok, L);
  const micro = Math.min(B, 8);
  const accumulation = Math.ceil(B / micro);
  const ready = await collateAhead().whenReady();
  const runs = [true, false].map((thread) => {
    const rng = new Rng(1);
    const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 16, intermediateSize: 64 } });
    const trainer = new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 1, batchSize: micro, gradAccumulation: accumulation, maxLength: L, totalSteps: 8 * steps + 20 });
    return { thread, model, trainer, ms: [] as number[], busy: [] as number[] };
  });
  const median = (xs: number[]) => +xs.slice().sort((a, b) => a - b)[xs.length >> 1].toFixed(2);
  try {
    for (let rep = -1; rep < 7; rep++) {
      for (const r of runs) {
        process.env.RETROMAE_COLLATE_AHEAD = r.thread ? "1" : "0";
        const [t0, e0] = [performance.now(), perfHooks.eventLoopUtilization()];
        await r.trainer.fit({ steps: rep < 0 ? 10 : steps, live: false }); // rep -1: shaders, the pool, the recording
        if (rep < 0) continue;
        r.ms.push((performance.now() - t0) / steps);
        r.busy.push(perfHooks.eventLoopUtilization(e0).active / steps);
      }
    }
  } finally {
    delete process.env.RETROMAE_COLLATE_AHEAD;
  }
  const [on, off] = runs;
  const row = {
    bench: "host",
    engine: "the collating thread: trainer steps on Dawn's Null backend, the next step's batches made on a second thread, against the main thread collating",
    preset: "tiny",
    hidden: 16,
    batch: B,
    seq: L,
    micro_batch: micro,
    grad_accumulation: accumulation,
    steps,
    fits: on.ms.length,
    ms_per_step_thread: median(on.ms),
    ms_per_step_main_thread_collates: median(off.ms),
    main_thread_busy_ms_per_step_thread: median(on.busy),
    main_thread_busy_ms_per_step_main_thread_collates: median(off.busy),
    steps_made_ahead: on.trainer.collatedAhead.steps,
    ...(ready ? {} : { thread_off: collateAhead().disabledReason }),
  };
  for (const r of runs) {
    r.trainer.dispose();
    r.model.dispose();
  }
  return row;
}

/** The trainer's collator on B blocks of L tokens (SciFact abstracts packed as the trainer packs them; staticShapes as on webgpu): ms per batch, after a few to warm up. */
function collatorRow(tok: BertTokenizer, texts: string[], B: number, L: number, batches: number): Record<string, unknown> {
  const corpus = PackedCorpus.fromTexts(texts.slice(0, 400), tok, L);
  const collator = new RetroMAECollator({ tokenizer: tok, rng: new Rng(3), maxLength: L, staticShapes: true });
  const batch = (s: number) => collator.collate(Array.from({ length: B }, (_, k) => corpus.block((s * B + k) % corpus.size)));
  for (let s = 0; s < 3; s++) batch(s);
  const t0 = performance.now();
  for (let s = 0; s < batches; s++) batch(s);
  return { bench: "host", engine: "the collator (JavaScript, on the host before every step)", batch: B, seq: L, batches, collate_ms_per_batch: +((performance.now() - t0) / batches).toFixed(2) };
}
