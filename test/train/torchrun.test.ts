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
import { torchrunCommand } from "../../lib/train/torchrun";
import { Trainer } from "../../lib/train/trainer";

const CLI = path.resolve(__dirname, "..", "..", "bin", "retromae.js");
const runDir = fs.mkdtempSync(path.join(os.tmpdir(), "torchrun-"));

test.before(async () => {
  await use("cpu");
  const tok = BertTokenizer.bertBaseUncased();
  const data = PackedCorpus.fromTexts(["Dense retrieval with masked auto-encoders.", "The decoder rebuilds the sentence from one embedding."], tok, 16);
  const rng = new Rng(3);
  const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 16, numAttentionHeads: 2, intermediateSize: 32, numHiddenLayers: 1 } });
  const t = new Trainer({ model, tokenizer: tok, data, rng, seed: 3, batchSize: 2, maxLength: 16, lr: 2e-4, encoderMaskRatio: 0.25, decoderMaskRatio: 0.6, runDir });
  await t.fit({ steps: 2, live: false });
});

test("the command carries the run's hyperparameters and its latest checkpoint", () => {
  const cmd = torchrunCommand(runDir, { nprocPerNode: 4, dataDir: "data/wiki" });
  assert.match(cmd, /^torchrun --nproc_per_node 4 -m pretrain\.run \\\n/);
  for (const flag of ["--encoder_mlm_probability 0.25", "--decoder_mlm_probability 0.6", "--learning_rate 0.0002", "--per_device_train_batch_size 2", "--max_seq_length 16", "--pretrain_method retromae", "--data_dir data/wiki", "--seed 3", "--weight_decay 0.01", "--warmup_ratio 0.1"])
    assert.ok(cmd.includes(flag), `${flag} in\n${cmd}`);
  assert.ok(cmd.includes(`--model_name_or_path ${path.join(runDir, "checkpoint-2")}`), cmd);
});

test("the CLI prints it; a folder that is not a run gets one sentence", () => {
  const out = execFileSync(process.execPath, [CLI, "export-torchrun", runDir], { encoding: "utf8" });
  assert.match(out, /staoxiao\/RetroMAE/);
  assert.match(out, /--nproc_per_node 8/);
  const bad = spawnSync(process.execPath, [CLI, "export-torchrun", os.tmpdir()], { encoding: "utf8" });
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /has no config\.json; pass a run directory written by Trainer/);
});

test.after(() => fs.rmSync(runDir, { recursive: true, force: true }));
test.run();
