/**
 * `npm run bench -- controls [--preset tiny] [--steps 30] [--reps 3] [--batch 32] [--seq 128] [--backend auto]`
 *
 * The control panel's cost on training steps: the same trainer fits
 * `steps` steps with no panel and with `trainer.controls()` open, in
 * alternating order, `reps` times each. The panel's widgets are opened on
 * a host that serialises every message as the kernel does (JSON, buffers
 * counted), and its status line updates at most twice a second. Prints
 * ms/step for both (the median over reps) and the ratio; the target is at
 * most 2% slower with the panel open. `--kernel` measures it inside the
 * real kernel instead, the panel displayed to a jupyter_client.
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
  if (args.includes("--kernel")) return benchControlsInKernel(args);
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

/**
 * `npm run bench -- controls --kernel [...]`: the same comparison inside the
 * real kernel, the panel displayed in the notebook: every widget message goes
 * through the kernel's iopub and transport thread to a jupyter_client, which
 * reads them as a front end would. Each fit's ms/step is measured in the kernel.
 */
export async function benchControlsInKernel(args: string[]): Promise<void> {
  const steps = Number(option(args, "steps") ?? 20);
  const reps = Number(option(args, "reps") ?? 3);
  const B = Number(option(args, "batch") ?? 32);
  const L = Number(option(args, "seq") ?? 128);
  const preset = option(args, "preset") ?? "tiny";
  const { execFileSync, spawnSync } = await import("child_process");
  const fs = await import("fs");
  const os = await import("os");
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), "bench-controls-"));
  const root = path.resolve(__dirname, "..");
  execFileSync(process.execPath, [path.join(root, "bin", "retromae.js"), "kernel", "install", "--prefix", prefix], { stdio: "ignore" });
  const setup = [
    'import { RetroMAE, Trainer, BertTokenizer, PackedCorpus, Rng } from "retromae";',
    "const tok = BertTokenizer.bertBaseUncased();",
    `const data = await PackedCorpus.fromFile(${JSON.stringify(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"))}, tok, ${L}, { limit: 400 });`,
    "const rng = new Rng(1);",
    `const trainer = new Trainer({ model: RetroMAE.create(${JSON.stringify(preset)}, { rng }), tokenizer: tok, data, rng, seed: 1, batchSize: ${B}, maxLength: ${L}, totalSteps: ${(2 * reps + 1) * steps + 3} });`,
    "await trainer.fit({ steps: 3, live: false });",
  ].join("\n");
  const py = `
import json, sys, time
from jupyter_client.manager import start_new_kernel
km, kc = start_new_kernel(kernel_name="retromae", startup_timeout=120)
def run(code):
    mid = kc.execute(code)
    result, comm = None, 0
    while True:
        m = kc.get_iopub_msg(timeout=900)
        if m["parent_header"].get("msg_id") != mid: continue
        t = m["msg_type"]
        if t == "comm_msg" or t == "comm_open": comm += 1
        if t == "execute_result": result = m["content"]["data"]["text/plain"]
        if t == "error": raise SystemExit("cell failed: " + m["content"]["evalue"])
        if t == "status" and m["content"]["execution_state"] == "idle": return result, comm
run(${JSON.stringify(setup)})
rows = []
for r in range(${reps}):
    for panel in ([True, False] if r % 2 else [False, True]):
        name = "fit_%d_%d" % (r, int(panel))
        code = ("display(trainer.controls());\\n" if panel else "trainer.controls().close();\\n") + "const %s = await trainer.fit({ steps: ${steps}, live: false });\\n%s.totalMs / %s.stepsTaken" % (name, name, name)
        result, comm = run(code)
        rows.append({"rep": r, "panel": panel, "ms_per_step": float(result), "comm_messages_seen": comm})
        print(json.dumps(rows[-1]), flush=True)
kc.stop_channels(); km.shutdown_kernel(now=True)
`;
  const r = spawnSync("/usr/bin/python3", ["-c", py], { encoding: "utf8", env: { ...process.env, JUPYTER_PATH: path.join(prefix, "share", "jupyter") }, maxBuffer: 1 << 24 });
  fs.rmSync(prefix, { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`The kernel bench failed: ${r.stderr.slice(-1500)}`);
  const rows = r.stdout.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { rep: number; panel: boolean; ms_per_step: number; comm_messages_seen: number });
  for (const row of rows) emit({ bench: "controls", where: "kernel", ...row, ms_per_step: +row.ms_per_step.toFixed(1) });
  const without = rows.filter((x) => !x.panel).map((x) => x.ms_per_step);
  const withPanel = rows.filter((x) => x.panel).map((x) => x.ms_per_step);
  const paired = median(withPanel.map((w, i) => w / without[i] - 1));
  emit({ bench: "controls", where: "kernel", preset, batch: B, seq: L, steps, reps, ms_per_step_without: +median(without).toFixed(1), ms_per_step_with_panel: +median(withPanel).toFixed(1), slowdown_of_medians: +(median(withPanel) / median(without) - 1).toFixed(4), slowdown_paired_median: +paired.toFixed(4), target: "≤ 0.02" });
}
