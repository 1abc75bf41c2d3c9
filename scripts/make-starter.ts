/**
 * The offline starting checkpoint (issue: experiments start where the
 * official recipe starts, from a pre-trained BERT). With no network there is
 * no Hub BERT, so this script makes one: MLM pre-training from scratch with
 * the project's own Trainer (the decoder off, BERT's 15% whole-word masks)
 * on the text in ../shared/data: SciFact's corpus (documents only: no
 * queries, no judgements) and WikiText-2.
 *
 * It is domain-adapted: it has seen SciFact's documents.
 *
 *   npm run starter -- [--preset tiny] [--steps 2000] [--batch 32] [--length 128] [--lr 1e-3]
 *                      [--seed 42] [--out runs/starter-tiny] [--every 100] [--publish models/starter-tiny]
 *   npm run starter -- --publish-from runs/starter-tiny [--publish models/starter-tiny]
 *
 * Writes OUT/ as a Trainer run directory (config.json, metrics.jsonl,
 * checkpoint-N/) and prints one JSON line per `every` steps: step, MLM loss
 * and accuracy (smoothed over the last `every` steps), wall time. Then it
 * publishes the last checkpoint to models/starter-PRESET (what
 * `starterCheckpoint()` returns): encoder and MLM head in fp16, config,
 * vocabulary, the run's config.json as training.json, and its metrics.
 * `--publish-from` publishes an existing run without training.
 */
import * as fs from "fs";
import * as path from "path";
import { backend, BertTokenizer, beirDocText, loadBeir, loadCheckpoint, PackedCorpus, RetroMAE, saveCheckpoint, Trainer } from "../lib";
import { latestCheckpoint } from "../lib/train/run-dir";
import { replaceDirAtomic, tempDirFor } from "../lib/util";

function option(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}

/** WikiText's paragraphs, without its " = Heading = " lines. */
export function wikitextParagraphs(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !/^=.*=$/.test(l));
}

/** Publish a starter run's last checkpoint: fp16 encoder + MLM head, vocabulary, training.json, metrics.jsonl. */
async function publish(runDir: string, dest: string): Promise<void> {
  const ckpt = latestCheckpoint(runDir);
  if (!ckpt) throw new Error(`${runDir} has no checkpoint-N folder; run the starter first.`);
  const { model } = loadCheckpoint(ckpt);
  const tmp = tempDirFor(dest);
  await saveCheckpoint(model, tmp, { encoderOnly: true, dtype: "F16", vocab: BertTokenizer.bertBaseUncased().vocab, retromae: { starter: "MLM on SciFact documents + WikiText-2 (scripts/make-starter.ts)", step: Number(path.basename(ckpt).split("-")[1]) } });
  fs.copyFileSync(path.join(runDir, "config.json"), path.join(tmp, "training.json"));
  // the loss curve, every 10th step (the run directory keeps every step)
  const lines = fs.readFileSync(path.join(runDir, "metrics.jsonl"), "utf8").split("\n").filter((l) => l && /"step":\d*0[,}]/.test(l));
  fs.writeFileSync(path.join(tmp, "metrics.jsonl"), lines.join("\n") + "\n");
  replaceDirAtomic(tmp, dest);
  model.dispose();
  console.log(JSON.stringify({ published: dest, from: ckpt, bytes: fs.statSync(path.join(dest, "model.safetensors")).size }));
}

async function main(args: string[]): Promise<void> {
  const from = option(args, "publish-from", "");
  if (from) {
    await backend.use("auto");
    return publish(from, option(args, "publish", path.join(__dirname, "..", "models", "starter-tiny")));
  }
  const preset = option(args, "preset", "tiny") as "tiny" | "mini";
  const steps = Number(option(args, "steps", "2000"));
  const batchSize = Number(option(args, "batch", "32"));
  const maxLength = Number(option(args, "length", "128"));
  const lr = Number(option(args, "lr", "1e-3"));
  const seed = Number(option(args, "seed", "42"));
  const every = Number(option(args, "every", "100"));
  const out = option(args, "out", `runs/starter-${preset}`);
  const data = process.env.RETROMAE_SHARED_DATA ?? path.join(__dirname, "..", "..", "shared", "data");

  const choice = await backend.use("auto");
  const tok = BertTokenizer.bertBaseUncased();
  const scifact = loadBeir(path.join(data, "beir-scifact"));
  const wiki = wikitextParagraphs(fs.readFileSync(path.join(data, "wikitext-2-raw", "wiki.test.raw"), "utf8"));
  const texts = [...[...scifact.corpus.values()].map((d) => beirDocText(d.title, d.text)), ...wiki];
  const corpus = PackedCorpus.fromTexts(texts, tok, maxLength);
  console.log(JSON.stringify({ backend: choice.backend, preset, docs: texts.length, blocks: corpus.size, tokens: corpus.tokens, steps, batchSize, maxLength, lr, seed }));

  const model = RetroMAE.create(preset, { seed });
  model.decoderLossWeight = 0; // MLM only: the encoder BERT's own objective
  const trainer = new Trainer({
    model,
    tokenizer: tok,
    data: corpus,
    seed,
    batchSize,
    maxLength,
    lr,
    warmupRatio: 0.06,
    encoderMaskRatio: 0.15,
    runDir: out,
    checkpointEvery: 500,
    keepLast: 1,
    settings: { name: `starter ${preset}`, purpose: "offline starting checkpoint: MLM on SciFact documents + WikiText-2", data: ["beir-scifact/corpus.jsonl", "wikitext-2-raw/wiki.test.raw"] },
  });
  let loss = 0;
  let acc = 0;
  let n = 0;
  const t0 = Date.now();
  await trainer.fit({
    steps,
    live: false,
    onEvent: (e) => {
      if (e.type !== "step") return;
      loss += e.encoderLoss;
      acc += e.encoderAccuracy;
      n++;
      if (e.step % every === 0 || e.step === steps) {
        console.log(JSON.stringify({ step: e.step, mlm_loss: +(loss / n).toFixed(4), mlm_accuracy: +(acc / n).toFixed(4), lr: +e.lr.toExponential(3), step_ms: Math.round(e.stepMs), elapsed_s: Math.round((Date.now() - t0) / 1000) }));
        loss = acc = n = 0;
      }
    },
  });
  console.log(JSON.stringify({ done: true, checkpoint: trainer.latestCheckpoint(), elapsed_s: Math.round((Date.now() - t0) / 1000) }));
  await publish(out, option(args, "publish", path.join(__dirname, "..", "models", `starter-${preset}`)));
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err) => {
    console.error((err as Error).message);
    process.exit(1);
  });
}
