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
 *   npm run starter -- [--preset tiny] [--steps 3000] [--batch 32] [--length 128] [--lr 1e-3]
 *                      [--seed 42] [--out runs/starter-tiny] [--every 100]
 *
 * Writes OUT/ as a Trainer run directory (config.json, metrics.jsonl,
 * checkpoint-N/) and prints one JSON line per `every` steps: step, MLM loss
 * and accuracy (smoothed over the last `every` steps), wall time.
 */
import * as fs from "fs";
import * as path from "path";
import { backend, BertTokenizer, beirDocText, loadBeir, PackedCorpus, RetroMAE, Trainer } from "../lib";

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

async function main(args: string[]): Promise<void> {
  const preset = option(args, "preset", "tiny") as "tiny" | "mini";
  const steps = Number(option(args, "steps", "3000"));
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
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err) => {
    console.error((err as Error).message);
    process.exit(1);
  });
}
