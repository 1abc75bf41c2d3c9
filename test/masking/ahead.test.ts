import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "path";
import { execFileSync } from "child_process";
import { Rng } from "../../lib/engine/rng";
import { collateAhead, CollateAhead, CollateJob } from "../../lib/masking/ahead";
import type { RetroMAEBatch } from "../../lib/masking/batch";
import { RetroMAECollator } from "../../lib/masking/collator";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { Vocab } from "../../lib/text/vocab";
import { loadBeir } from "../../lib/data/beir";
import { PackedCorpus } from "../../lib/train/data";
import { SHARED_DATA } from "../helpers";

const tok = BertTokenizer.bertBaseUncased();
const texts = [...loadBeir(path.join(SHARED_DATA, "beir-scifact")).corpus.values()].slice(0, 120).map((d) => d.text);
const corpus = PackedCorpus.fromTexts(texts, tok, 64);
const ahead = collateAhead();

/** A job of `micro` micro-batches of 4 blocks from block `from`, from the generator's current state. */
function job(rng: Rng, from: number, options: Partial<CollateJob["options"]> = {}, micro = 2, seedCalls = 3): CollateJob {
  const examples = Array.from({ length: micro }, (_, m) => Array.from({ length: 4 }, (_, k) => corpus.block((from + 4 * m + k) % corpus.size)));
  return { tokenizer: tok, examples, rng: rng.getState(), options: { maxLength: 64, vocabSize: tok.vocab.size, staticShapes: true, encoderMaskRatio: 0.3, decoderMaskRatio: 0.5, ...options }, seedCalls };
}

/** What the main thread makes from the same job: each batch, then its dropout seeds, from the job's generator. */
function collateHere(j: CollateJob): { batches: RetroMAEBatch[]; seeds: number[] | null; rng: ReturnType<Rng["getState"]> } {
  const rng = Rng.fromState(j.rng);
  const collator = new RetroMAECollator({ tokenizer: j.tokenizer, rng, ...j.options });
  const batches: RetroMAEBatch[] = [];
  const seeds: number[] = [];
  for (const examples of j.examples) {
    batches.push(collator.collate(examples));
    if (j.seedCalls >= 0) seeds.push(rng.seeds(j.seedCalls));
  }
  return { batches, seeds: j.seedCalls >= 0 ? seeds : null, rng: rng.getState() };
}

test("the collating thread starts, and a job's batches, dropout seeds and the generator's state after them are the main thread's, bit for bit (micro-batches, padded or not, with and without seeds, both ratios set)", async () => {
  assert.ok(await ahead.whenReady(), `the thread did not start: ${ahead.disabledReason}`);
  const owner = {};
  const rng = new Rng(5);
  rng.normal(); // a cached Box–Muller normal is part of the state, and comes back as it went
  const cases: [Partial<CollateJob["options"]>, number, number][] = [
    [{}, 2, 3],
    [{ staticShapes: false }, 1, -1],
    [{ encoderMaskRatio: 0.15, decoderMaskRatio: 0.7, maxLength: 40 }, 3, 0],
  ];
  for (const [options, micro, seedCalls] of cases) {
    const j = job(rng, micro * 7, options, micro, seedCalls);
    const here = collateHere(j);
    ahead.start(owner, "k", j);
    const made = await ahead.take(owner, "k");
    assert.ok(made, "the job was made");
    assert.equal(made!.rng, here.rng, "the generator's state after the step's draws");
    assert.equal(made!.seeds, here.seeds, "dropout seeds");
    assert.is(made!.batches.length, micro);
    made!.batches.forEach((b, i) => assert.equal(b, here.batches[i], `micro-batch ${i}`));
    assert.ok(here.rng.spare !== null);
    rng.setState(made!.rng);
  }
});

test("a result is taken only by its owner under its key, once; a new job replaces one not taken; its owner can forget it; before the thread is up, take gives null", async () => {
  const [a, b] = [{}, {}];
  const rng = new Rng(1);
  ahead.start(a, "k1", job(rng, 0));
  assert.is(await ahead.take(a, "k2"), null, "another key");
  ahead.start(a, "k1", job(rng, 0));
  assert.is(await ahead.take(b, "k1"), null, "another owner");
  ahead.start(a, "k1", job(rng, 0));
  assert.is(await ahead.take(a, null), null, "no key (the caller cannot make it ahead)");
  ahead.start(a, "old", job(rng, 0));
  const j = job(rng, 8);
  ahead.start(a, "new", j);
  assert.is(await ahead.take(a, "old"), null, "replaced");
  assert.is(await ahead.take(a, "new"), null, "taken once: the failed take above used it up");
  ahead.start(a, "new", j);
  assert.equal((await ahead.take(a, "new"))!.batches, collateHere(j).batches);
  ahead.start(a, "k", j);
  ahead.forget(b);
  assert.ok(await ahead.take(a, "k"), "another owner's forget leaves it");
  ahead.start(a, "k", j);
  ahead.forget(a);
  assert.is(await ahead.take(a, "k"), null, "forgotten by its owner (a trainer disposed of)");
  const fresh = new CollateAhead();
  fresh.start(a, "k", job(rng, 0));
  assert.is(await fresh.take(a, "k"), null, "a thread still starting: the caller collates");
  assert.ok(await fresh.whenReady());
  fresh.start(a, "k", job(rng, 0));
  assert.ok(await fresh.take(a, "k"));
  await fresh.close();
});

test("tokenizers made again over the same vocabulary go to the thread once; another vocabulary or other special tokens go again", async () => {
  const fresh = new CollateAhead();
  assert.ok(await fresh.whenReady());
  const worker = (fresh as unknown as { worker: { postMessage: (m: { type: string }, t?: unknown) => void } }).worker;
  const post = worker.postMessage.bind(worker);
  const sent: string[] = [];
  worker.postMessage = (m, t) => (sent.push(m.type), post(m, t));
  const owner = {};
  const other = new BertTokenizer(new Vocab([...tok.vocab.tokens]));
  const [a, b, c, d] = [BertTokenizer.bertBaseUncased(), BertTokenizer.bertBaseUncased(), other, BertTokenizer.bertBaseUncased({ unkToken: "[MASK]" })];
  for (const t of [a, b, c, d, b]) {
    const j = { ...job(new Rng(4), 0), tokenizer: t };
    fresh.start(owner, "k", j);
    assert.equal((await fresh.take(owner, "k"))!.batches, collateHere(j).batches);
  }
  assert.equal(sent, ["tokenizer", "collate", "collate", "tokenizer", "collate", "tokenizer", "collate", "collate"]);
  await fresh.close();
});

test("a job that fails on the thread (a token id past the vocabulary) gives null, so the caller collates and meets the error in its own words; the thread goes on", async () => {
  const owner = {};
  const small = new BertTokenizer(new Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]));
  const base = job(new Rng(1), 0);
  const bad: CollateJob = { ...base, tokenizer: small, examples: [[Int32Array.of(5, 6, 900)]], options: { ...base.options, vocabSize: 7 } };
  ahead.start(owner, "bad", bad);
  assert.is(await ahead.take(owner, "bad"), null);
  assert.throws(() => collateHere(bad), /Token id 900 is outside the vocabulary \[0, 7\); pass ids from the same tokenizer\./);
  const good = job(new Rng(2), 4);
  ahead.start(owner, "good", good);
  assert.equal((await ahead.take(owner, "good"))!.batches, collateHere(good).batches);
});

test("RETROMAE_COLLATE_AHEAD=0 turns the thread off: nothing is sent, take gives null, and the reason is named", async () => {
  process.env.RETROMAE_COLLATE_AHEAD = "0";
  try {
    const off = new CollateAhead();
    assert.is(off.enabled, false);
    assert.is(off.disabledReason, "RETROMAE_COLLATE_AHEAD=0");
    assert.is(await off.whenReady(), false);
    const owner = {};
    off.start(owner, "k", job(new Rng(1), 0));
    assert.is(await off.take(owner, "k"), null);
  } finally {
    delete process.env.RETROMAE_COLLATE_AHEAD;
  }
  assert.is(ahead.enabled, true);
});

test("a script that used the collating thread exits by itself, idle or with a job not taken", () => {
  const lib = path.resolve(__dirname, "..", "..", "lib");
  const script = `
    const { collateAhead } = require(${JSON.stringify(path.join(lib, "masking", "ahead"))});
    const { BertTokenizer } = require(${JSON.stringify(path.join(lib, "text", "tokenizer"))});
    const { Rng } = require(${JSON.stringify(path.join(lib, "engine", "rng"))});
    (async () => {
      const a = collateAhead();
      if (!(await a.whenReady())) throw new Error("no thread");
      const tokenizer = BertTokenizer.bertBaseUncased();
      const options = { maxLength: 16, vocabSize: tokenizer.vocab.size, staticShapes: false, encoderMaskRatio: 0.3, decoderMaskRatio: 0.5 };
      const job = { tokenizer, examples: [[Int32Array.of(2023, 2003, 1037, 3231)]], rng: new Rng(1).getState(), options, seedCalls: -1 };
      const owner = {};
      a.start(owner, "k", job);
      const made = await a.take(owner, "k");
      a.start(owner, "k", job); // left on the thread
      console.log(made ? made.batches[0].seqLength : "none");
    })();`;
  const out = execFileSync(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", script], { encoding: "utf8", timeout: 60_000 });
  assert.is(out.trim(), "6");
});

test.after(() => ahead.close());
test.run();
