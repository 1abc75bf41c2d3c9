/**
 * `npm run bench -- controls [--preset tiny] [--steps 30] [--reps 3] [--batch 32] [--seq 128] [--backend auto]`
 *
 * The control panel's cost on training steps: the same trainer fits
 * `steps` steps with no panel and with `trainer.controls()` open, in
 * alternating order, `reps` times each. The panel's widgets are opened on
 * a host that serialises every message as the kernel does (JSON, buffers
 * counted), and its status line updates at most twice a second. Prints
 * ms/step for both (the median over reps) and the ratio; the target is at
 * most 2% slower with the panel open.
 */
import * as path from "path";
import { use } from "../lib/engine/backend";
import { Rng } from "../lib/engine/rng";
import { PresetName } from "../lib/model/config";
import { RetroMAE } from "../lib/model/retromae";
import { BertTokenizer } from "../lib/text/tokenizer";
import { PackedCorpus } from "../lib/train/data";
import { Trainer } from "../lib/train/trainer";
import { HostedModel, setWidgetHost, WidgetHost } from "../lib/widgets/host";
import { emit, option, SHARED_DATA } from "./common";

/** A host that does the kernel's work on each message up to the socket: JSON-encode it, with its buffers. */
class SerialisingHost implements WidgetHost {
  readonly connected = true;
  messages = 0;
  bytes = 0;
  private n = 0;
  open(model: HostedModel) {
    const full = model.fullState();
    this.count({ method: "open", state: full.state, buffer_paths: full.bufferPaths }, full.buffers);
    return { id: `b${++this.n}`, send: (data: Record<string, unknown>, buffers: Uint8Array[] = []) => this.count(data, buffers), close: () => undefined };
  }
  private count(data: Record<string, unknown>, buffers: Uint8Array[]) {
    this.messages++;
    this.bytes += Buffer.byteLength(JSON.stringify({ comm_id: "x", data })) + buffers.reduce((a, b) => a + b.byteLength, 0);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function benchControls(args: string[]): Promise<void> {
  const preset = (option(args, "preset") ?? "tiny") as PresetName;
  const steps = Number(option(args, "steps") ?? 30);
  const reps = Number(option(args, "reps") ?? 3);
  const B = Number(option(args, "batch") ?? 32);
  const L = Number(option(args, "seq") ?? 128);
  const choice = await use(option(args, "backend") ?? "auto");
  const tok = BertTokenizer.bertBaseUncased();
  const corpus = await PackedCorpus.fromFile(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), tok, L, { limit: 400 });
  const host = new SerialisingHost();
  const previous = setWidgetHost(host);
  const rng = new Rng(1);
  const trainer = new Trainer({ model: RetroMAE.create(preset, { rng }), tokenizer: tok, data: corpus, rng, seed: 1, batchSize: B, maxLength: L, totalSteps: (2 * reps + 1) * steps + 1 });
  await trainer.fit({ steps: 3, live: false }); // warm-up
  const without: number[] = [];
  const withPanel: number[] = [];
  for (let r = 0; r < reps; r++) {
    for (const panel of r % 2 ? [true, false] : [false, true]) {
      if (panel) trainer.controls();
      else trainer.controls().close();
      const before = host.messages;
      const fit = await trainer.fit({ steps, live: false });
      const ms = fit.totalMs / fit.stepsTaken;
      (panel ? withPanel : without).push(ms);
      emit({ bench: "controls", rep: r, panel, ms_per_step: +ms.toFixed(1), widget_messages: host.messages - before });
    }
  }
  trainer.controls().close();
  setWidgetHost(previous);
  const a = median(without);
  const b = median(withPanel);
  // each rep's pair ran back to back: the median of their ratios is the least noisy figure on a shared machine
  const paired = median(withPanel.map((w, i) => w / without[i] - 1));
  emit({ bench: "controls", preset, backend: choice.backend, batch: B, seq: L, steps, reps, ms_per_step_without: +a.toFixed(1), ms_per_step_with_panel: +b.toFixed(1), slowdown_of_medians: +(b / a - 1).toFixed(4), slowdown_paired_median: +paired.toFixed(4), target: "≤ 0.02", widget_messages_per_step: +(host.messages / ((2 * reps + 1) * steps)).toFixed(2), widget_bytes_total: host.bytes });
  trainer.dispose();
}
