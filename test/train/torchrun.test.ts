import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { RetroMAE } from "../../lib/model/retromae";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { PackedCorpus } from "../../lib/train/data";
import { OFFICIAL_TARGETS, torchrunCommand, torchrunExport } from "../../lib/train/torchrun";
import { Trainer } from "../../lib/train/trainer";

const CLI = path.resolve(__dirname, "..", "..", "bin", "retromae.js");
const runDir = fs.mkdtempSync(path.join(os.tmpdir(), "torchrun-"));
const OFFICIAL = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "fixtures", "official", "pretrain-args.json"), "utf8"));

/** A run directory with a checkpoint, config.json edited by `edit`. */
function variant(edit: (c: Record<string, any>) => void): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "torchrun-v-"));
  fs.cpSync(runDir, dir, { recursive: true });
  const file = path.join(dir, "config.json");
  const c = JSON.parse(fs.readFileSync(file, "utf8"));
  edit(c);
  fs.writeFileSync(file, JSON.stringify(c));
  return dir;
}

test.before(async () => {
  await use("cpu");
  const tok = BertTokenizer.bertBaseUncased();
  const texts = ["Dense retrieval with masked auto-encoders.", "The decoder rebuilds the sentence from one embedding."];
  const data = PackedCorpus.fromTexts(Array.from({ length: 16 }, (_, i) => texts[i % 2]), tok, 16);
  const rng = new Rng(3);
  const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 16, numAttentionHeads: 2, intermediateSize: 32, numHiddenLayers: 1 } });
  const t = new Trainer({ model, tokenizer: tok, data, rng, seed: 3, batchSize: 16, maxLength: 16, lr: 2e-4, warmupRatio: 0.06, encoderMaskRatio: 0.25, decoderMaskRatio: 0.6, runDir });
  await t.fit({ steps: 2, live: false });
});

test("the command carries the run's hyperparameters, its exact warmup and its latest checkpoint, and keeps the global batch", () => {
  const cmd = torchrunCommand(runDir, { nprocPerNode: 4, dataDir: "data/wiki" });
  assert.match(cmd, /^torchrun --nproc_per_node 4 -m pretrain\.run \\\n/);
  // batch 16 over 4 processes: 4 per device, the global batch stays 16 at the run's lr
  for (const flag of ["--encoder_mlm_probability 0.25", "--decoder_mlm_probability 0.6", "--learning_rate 0.0002", "--per_device_train_batch_size 4", "--gradient_accumulation_steps 1", "--max_seq_length 16", "--pretrain_method retromae", "--data_dir data/wiki", "--seed 3", "--weight_decay 0.01", "--warmup_ratio 0.06"])
    assert.ok(cmd.includes(flag), `${flag} in\n${cmd}`);
  assert.not.ok(cmd.includes("bow_loss_weight"));
  assert.ok(cmd.includes(`--model_name_or_path ${path.join(runDir, "checkpoint-2")}`), cmd);
  const kept = torchrunExport(runDir, { nprocPerNode: 4, keepPerDevice: true });
  assert.is(kept.flags.get("per_device_train_batch_size"), "16");
  assert.match(kept.notes.join(" "), /Global batch 64 = 16 per device × 4 processes × 1 accumulation, 4 times the run's 16 at the same lr/);
});

test("every emitted flag is one the official entry points accept (both flavours, DupMAE included)", () => {
  const training = new Set<string>(OFFICIAL.training_arguments.fields);
  const dupmae = variant((c) => (c.bowLossWeight = 0.1));
  for (const [flavour, dir] of [["retromae", runDir], ["retromae", dupmae], ["flagembedding", runDir]] as const) {
    const known = new Set<string>([...OFFICIAL[flavour].fields, ...training]);
    const out = torchrunExport(dir, { flavour });
    for (const name of out.flags.keys()) assert.ok(known.has(name), `--${name} is not an argument of ${flavour}`);
    assert.match(out.command, new RegExp(`-m ${OFFICIAL[flavour].module.replace(/\./g, "\\.")} `));
    assert.ok(OFFICIAL[flavour].commit.startsWith(OFFICIAL_TARGETS[flavour].commit));
  }
  const d = torchrunExport(dupmae);
  assert.is(d.flags.get("pretrain_method"), "dupmae");
  assert.is(d.flags.get("bow_loss_weight"), "0.1");
  const f = torchrunExport(runDir, { flavour: "flagembedding", dataDir: "text.jsonl" });
  assert.is(f.flags.get("train_data"), "text.jsonl");
  assert.not.ok(f.flags.has("pretrain_method"));
  assert.match(torchrunExport(runDir).notes[0], /264346f/);
});

test("runs the official trainers cannot express are refused with one sentence; the data length is kept and warned about", () => {
  const cases: [(c: Record<string, any>) => void, RegExp, object?][] = [
    [(c) => (c.decoderLossWeight = 0), /is an MLM-only run \(decoderLossWeight 0\); the official trainers always train the decoder/],
    [(c) => (c.decoderLossWeight = 0.5), /weights the decoder loss by 0\.5; the official trainers add it with weight 1/],
    [(c) => (c.bowLossWeight = 0.1), /FlagEmbedding's retromae_pretrain has no DupMAE/, { flavour: "flagembedding" }],
    [(c) => (c.batchSize = 12), /global batch of 12 does not split evenly over 8 processes; pass --nproc 4/],
  ];
  for (const [edit, message, opts] of cases) assert.throws(() => torchrunExport(variant(edit), opts ?? {}), message);
  const out = torchrunExport(runDir);
  assert.match(out.preprocess!, /--max_seq_length 16 /);
  assert.match(out.warnings.join(" "), /trained on 16-token blocks; data preprocessed with preprocess\.py's default --max_seq_length 512 would be cut to 16 tokens per block/);
  assert.match(out.notes.join(" "), /What restarts: the decoder \(c_head.*the AdamW moments, and the lr schedule/);
  // a config from before warmupRatio was recorded: the run's own fraction
  const old = torchrunExport(variant((c) => (c.schedule = { totalSteps: 50, warmupSteps: 3, decay: "linear" })));
  assert.is(old.flags.get("warmup_ratio"), "0.06");
  const steps = torchrunExport(variant((c) => (c.schedule = { warmupSteps: 7, decay: "linear" })));
  assert.is(steps.flags.get("warmup_steps"), "7");
});

test("the CLI prints it; a folder that is not a run gets one sentence", () => {
  const out = execFileSync(process.execPath, [CLI, "export-torchrun", runDir], { encoding: "utf8" });
  assert.match(out, /staoxiao\/RetroMAE/);
  assert.match(out, /--nproc_per_node 8/);
  const bad = spawnSync(process.execPath, [CLI, "export-torchrun", os.tmpdir()], { encoding: "utf8" });
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /has no config\.json; pass a run directory written by Trainer/);
});

test.after(() => {
  fs.rmSync(runDir, { recursive: true, force: true });
  for (const d of fs.readdirSync(os.tmpdir())) if (d.startsWith("torchrun-v-")) fs.rmSync(path.join(os.tmpdir(), d), { recursive: true, force: true });
});
test.run();
