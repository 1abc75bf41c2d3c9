import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tf from "../../lib/engine/tf";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { Display, MimeBundle, setDisplay, toBundle } from "../../lib/display";
import { setAmbientSignal } from "../../lib/interrupt";
import { RetroMAE } from "../../lib/model/retromae";
import { PLOTLY_MIME } from "../../lib/plot/figure";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { Vocab } from "../../lib/text/vocab";
import { PackedCorpus } from "../../lib/train/data";
import { Trainer, TrainerEvent, StepInfo } from "../../lib/train/trainer";
import { SHARED_DATA } from "../helpers";

const tok = BertTokenizer.bertBaseUncased();
let corpus: PackedCorpus;
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "run-"));

function makeTrainer(extra: Partial<ConstructorParameters<typeof Trainer>[0]> = {}): Trainer {
  const rng = new Rng(7);
  const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
  return new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 7, batchSize: 4, maxLength: 32, lr: 1e-3, warmupSteps: 1, ...extra });
}

async function losses(trainer: Trainer, steps: number, extra = {}): Promise<number[]> {
  const out: number[] = [];
  await trainer.fit({ steps, live: false, onEvent: (e) => e.type === "step" && out.push(e.loss), ...extra });
  return out;
}

test.before(async () => {
  corpus = await PackedCorpus.fromFile(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), tok, 32, { limit: 30 });
});

test("fit emits every field each step, keeps tensors flat and lowers the loss", async () => {
  await use("wasm");
  const trainer = makeTrainer({ totalSteps: 100 });
  const events: StepInfo[] = [];
  const r = await trainer.fit({ steps: 12, live: false, onEvent: (e) => e.type === "step" && events.push(e) });
  assert.is(r.status, "done");
  assert.is(r.stepsTaken, 12);
  assert.is(trainer.step, 12);
  const e = events[5];
  for (const k of ["loss", "encoderLoss", "decoderLoss", "encoderAccuracy", "decoderAccuracy", "lr", "gradNorm", "tokensPerSec", "elapsedMs", "numTensors", "epoch"] as const) {
    assert.type(e[k], "number", k);
  }
  assert.ok(events.every((x) => x.numTensors === events[0].numTensors), `tensors ${events.map((x) => x.numTensors)}`);
  assert.is(events[0].lr, 0, "warmup starts at 0");
  assert.ok(Math.abs(events[1].lr - 1e-3) < 1e-12);
  const first = (events[0].loss + events[1].loss) / 2;
  const last = (events[10].loss + events[11].loss) / 2;
  assert.ok(last < first - 0.3, `loss ${first} -> ${last}`);
  trainer.dispose();
});

test("resume from a checkpoint gives the same losses and weights, bit for bit (cpu)", async () => {
  await use("cpu");
  const straight = makeTrainer({ totalSteps: 4 });
  const all = await losses(straight, 4);
  const dir = tmp();
  const first = makeTrainer({ totalSteps: 4, runDir: dir });
  const head = await losses(first, 2);
  assert.equal(head, all.slice(0, 2));
  const resumed = Trainer.resume(dir, { tokenizer: tok, data: corpus });
  assert.is(resumed.step, 2);
  const tail = await losses(resumed, 2);
  assert.equal(tail, all.slice(2), "resumed losses equal the uninterrupted run's");
  for (const [name, w] of straight.model.weights) {
    assert.equal(Array.from(resumed.model.weights.get(name)!.dataSync()), Array.from(w.dataSync()), name);
  }
});

test("an interrupt stops after the current step; the next fit continues as if uninterrupted", async () => {
  await use("cpu");
  const straight = makeTrainer({ totalSteps: 4 });
  const all = await losses(straight, 4);
  const t = makeTrainer({ totalSteps: 4 });
  const ac = new AbortController();
  const got: number[] = [];
  const r = await t.fit({ steps: 4, live: false, signal: ac.signal, onEvent: (e: TrainerEvent) => {
    if (e.type !== "step") return;
    got.push(e.loss);
    if (e.step === 2) ac.abort();
  } });
  assert.is(r.status, "stopped");
  assert.is(t.step, 2);
  got.push(...(await losses(t, 2)));
  assert.equal(got, all);
});

test("with no signal given, fit watches the host's ambient one (the kernel's interrupt)", async () => {
  await use("cpu");
  const t = makeTrainer({ totalSteps: 4 });
  const host = new AbortController();
  const previous = setAmbientSignal(() => host.signal);
  try {
    const r = await t.fit({ steps: 4, live: false, onEvent: (e: TrainerEvent) => {
      if (e.type === "step" && e.step === 1) host.abort();
    } });
    assert.is(r.status, "stopped");
    assert.is(t.step, 1);
  } finally {
    setAmbientSignal(previous);
  }
});

test("run directory: config.json with backend and seed, metrics.jsonl, last K checkpoints, no temporaries", async () => {
  await use("wasm");
  const dir = tmp();
  const t = makeTrainer({ runDir: dir, checkpointEvery: 2, keepLast: 2 });
  await t.fit({ steps: 7, live: false });
  const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  assert.is(config.backend.backend, "wasm");
  assert.is(config.backend.versions["tfjs-core"], "4.22.0");
  assert.is(config.seed, 7);
  assert.is(config.encoderMaskRatio, 0.3);
  assert.is(config.optimizer.lr, 1e-3);
  const lines = fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.is(lines.length, 7);
  assert.is(lines[6].step, 7);
  assert.equal(fs.readdirSync(dir).filter((n) => n.startsWith("checkpoint-")).sort(), ["checkpoint-6", "checkpoint-7"]);
  assert.not.ok(fs.readdirSync(dir).some((n) => n.startsWith(".tmp")));
  assert.equal(fs.readdirSync(path.join(dir, "checkpoint-7")).sort(), ["config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json", "vocab.txt"]);
});

test("a NaN loss stops the run with a clear sentence, applies no update and names the last good checkpoint", async () => {
  await use("wasm");
  const dir = tmp();
  const t = makeTrainer({ runDir: dir });
  await t.fit({ steps: 2, live: false });
  const before = t.model.weights.get("c_head.output.dense.weight")!.dataSync().slice();
  const real = t.model.gradients.bind(t.model);
  let calls = 0;
  t.model.gradients = (b, o) => {
    const r = real(b, o);
    // Step 3's loss is NaN; step 4 (queued before step 3 is read) is finite, and must not update either.
    if (calls++ === 0) {
      r.losses.loss.dispose();
      r.losses.loss = tf.scalar(NaN);
    }
    return r;
  };
  const tensors = tf.memory().numTensors;
  try {
    await t.fit({ steps: 3, live: false, queueAhead: true });
    assert.unreachable("should stop");
  } catch (err) {
    assert.match((err as Error).message, /^Loss became NaN at step 3 .*no update was applied, and the last good checkpoint is .*checkpoint-2\. Lower lr/);
  }
  assert.is(calls, 2, "step 4 was queued before step 3 was read");
  assert.is(t.step, 2);
  assert.is(tf.memory().numTensors, tensors, "the queued step's tensors are freed");
  assert.equal(Array.from(t.model.weights.get("c_head.output.dense.weight")!.dataSync()), Array.from(before));
  t.model.gradients = () => {
    throw new Error("RuntimeError: memory access out of bounds");
  };
  try {
    await t.fit({ steps: 1, live: false });
    assert.unreachable("should stop");
  } catch (err) {
    assert.match((err as Error).message, /ran out of memory at batch size 4 × length 32; lower batchSize \(e.g. 2\)/);
  }
});

test("gradient accumulation averages micro-batches: k=2 sees twice the tokens per step", async () => {
  await use("wasm");
  const t = makeTrainer({ gradAccumulation: 2 });
  const one = makeTrainer();
  const ev: StepInfo[] = [];
  const ev1: StepInfo[] = [];
  await t.fit({ steps: 2, live: false, onEvent: (e) => e.type === "step" && ev.push(e) });
  await one.fit({ steps: 2, live: false, onEvent: (e) => e.type === "step" && ev1.push(e) });
  assert.is(t.stream.position.index, 16);
  assert.is(one.stream.position.index, 8);
  assert.ok(ev[0].tokens > ev1[0].tokens * 1.5);
  assert.ok(Number.isFinite(ev[1].loss));
});

test("gradient accumulation with the decoder off (MLM-only, where the loss is the encoder's loss): every backend trains, tensors flat", async () => {
  // before: the micro-batches' loss parts were added and disposed part by part, and the loss and the
  // encoder's loss were one tensor, so the second part read disposed data (a TypeError from inside tfjs)
  for (const name of ["cpu", "wasm"] as const) {
    await use(name);
    const t = makeTrainer({ gradAccumulation: 2 });
    t.model.decoderLossWeight = 0;
    const ev: StepInfo[] = [];
    await t.fit({ steps: 1, live: false, onEvent: (e) => e.type === "step" && ev.push(e) });
    const before = tf.memory().numTensors;
    await t.fit({ steps: 2, live: false, onEvent: (e) => e.type === "step" && ev.push(e) });
    assert.is(tf.memory().numTensors, before, `${name}: tensors flat`);
    assert.ok(ev.every((e) => Number.isFinite(e.loss) && e.loss === e.encoderLoss && Number.isNaN(e.decoderLoss)), `${name}: ${JSON.stringify(ev.map((e) => [e.loss, e.encoderLoss]))}`);
    t.model.dispose();
    t.dispose();
  }
});

test("live chart: updates through the display handle, throttled, always a final update; hooks add probe points", async () => {
  await use("wasm");
  const shown: { bundle: MimeBundle; updates: MimeBundle[] }[] = [];
  const capture: Display = {
    show: (v) => {
      const entry = { bundle: toBundle(v), updates: [] as MimeBundle[] };
      shown.push(entry);
      return { update: (u) => entry.updates.push(toBundle(u)) };
    },
  };
  const previous = setDisplay(capture);
  try {
    const t = makeTrainer({ hooks: [{ every: 2, run: (tr) => ({ ndcg10: tr.step / 100 }) }] });
    await t.fit({ steps: 4, liveIntervalMs: 0 });
    assert.is(shown.length, 2, "a chart and a progress bar");
    const chart = shown[0];
    assert.ok(PLOTLY_MIME in chart.bundle);
    assert.ok(chart.updates.length >= 2, `chart updates ${chart.updates.length}`);
    const final = chart.updates[chart.updates.length - 1][PLOTLY_MIME] as { data: { name: string; y: number[] }[] };
    assert.is(final.data.find((d) => d.name.endsWith(" (raw)"))!.y.length, 4, "the encoder loss, every step");
    assert.equal(final.data.find((d) => d.name.endsWith(": ndcg10"))!.y, [0.02, 0.04]);
    assert.match(shown[1].updates[shown[1].updates.length - 1]["text/html"] as string, /step 4\/4 · done after/);

    shown.length = 0;
    const slow = makeTrainer();
    await slow.fit({ steps: 3, liveIntervalMs: 1e9 });
    assert.is(shown[0].updates.length, 2, "throttled: first event and the final update only");
  } finally {
    setDisplay(previous);
  }
});

test("outside a notebook: a terminal progress line with ETA and the latest losses, no chart", async () => {
  await use("wasm");
  const written: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => (written.push(String(chunk)), true)) as typeof process.stderr.write;
  try {
    await makeTrainer().fit({ steps: 3, liveIntervalMs: 0 });
  } finally {
    process.stderr.write = write;
  }
  const text = written.join("");
  assert.match(text, /\rstep 1\/3 \[.*\] 33% ETA \d+s \| \d+ tok\/s \| loss \d+\.\d{4} \(enc \d+\.\d{3}, dec \d+\.\d{3}\)/);
  assert.match(text, /step 3\/3 \[=+\] 100% done after \d+s/);
});

test("runs on one chart are labelled by what differs", async () => {
  await use("wasm");
  const a = makeTrainer({ encoderMaskRatio: 0.3, decoderMaskRatio: 0.5 });
  const b = makeTrainer({ encoderMaskRatio: 0.3, decoderMaskRatio: 0.7, chart: a.chart });
  await a.fit({ steps: 1, live: false });
  await b.fit({ steps: 1, live: false });
  const names = (a.chart.figure().toJSON().data as { name: string }[]).map((d) => d.name);
  assert.ok(names.includes("dec 0.5") && names.includes("dec 0.7"), names.join(","));
});

test("bad options get one clear sentence", () => {
  assert.throws(() => makeTrainer({ batchSize: 0 }), /batchSize must be a positive whole number/);
  assert.throws(() => makeTrainer({ maxLength: 4096 }), /exceeds the model's 512 positions/);
  assert.throws(() => makeTrainer({ recordSteps: "yes" as unknown as boolean }), /^Trainer recordSteps must be true, false or "tfjs", got "yes"\.$/);
  assert.throws(() => Trainer.resume("/no/such/run", { tokenizer: tok, data: corpus }), /holds no checkpoint/);
});

test("a tokenizer or a corpus with ids past the model's vocabulary is one sentence, before any step (webgpu would read past the embedding table unchecked)", () => {
  const models: RetroMAE[] = [];
  const model = (vocabSize: number) => {
    models.push(RetroMAE.create("tiny", { rng: new Rng(7), overrides: { vocabSize, hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } }));
    return models[models.length - 1];
  };
  assert.ok(corpus.maxId > 1000 && corpus.maxId < tok.vocab.size, `corpus ids up to ${corpus.maxId}`);
  assert.throws(
    () => makeTrainer({ model: model(1000) }),
    /^The tokenizer has token ids up to 30,521, past this model's vocabulary of 1,000 \(config\.vocabSize\); use the tokenizer the model was made with, or a model made for this one \(vocabSize 30,522 or more\)\.$/,
  );
  // a corpus made with a larger tokenizer than the trainer's
  const small = new BertTokenizer(new Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ...Array.from({ length: 95 }, (_, i) => `w${i}`)]));
  assert.throws(() => makeTrainer({ model: model(100), tokenizer: small }), new RegExp(`^The training corpus has token ids up to ${corpus.maxId.toLocaleString("en-US")}, past this model's vocabulary of 100 `));
  makeTrainer({ model: model(tok.vocab.size + 2) }).dispose(); // a model with spare rows (HF pads vocabularies) is fine
  models.forEach((m) => m.dispose());
});

test.run();
