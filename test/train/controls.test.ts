/**
 * trainer.controls(): the control panel steers a running fit through the
 * widget protocol (a recording host plays the front end), every change is
 * recorded in the run directory, and a replay of the recorded changes with
 * no panel gives the same losses, bit for bit on the cpu backend; resume
 * reapplies the changes made after its checkpoint. On webgpu (SwiftShader, a
 * micro model) the panel steers a fit whose next step is already queued and
 * whose steps are replayed: each change applies from the step after the
 * queued one, and a new encoder ratio is recorded and replayed again.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { RetroMAE } from "../../lib/model/retromae";
import { PLOTLY_MIME } from "../../lib/plot/figure";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { PackedCorpus } from "../../lib/train/data";
import { readSettingsHistory, checkChange } from "../../lib/train/changes";
import { LrSchedule } from "../../lib/train/schedule";
import { Trainer } from "../../lib/train/trainer";
import { HostedModel, setWidgetHost, WidgetHost } from "../../lib/widgets/host";
import { SHARED_DATA } from "../helpers";
import { microModel, microTokenizer, useSoftwareVulkan } from "../webgpu-helpers";

const tok = BertTokenizer.bertBaseUncased();
let corpus: PackedCorpus;

class FrontEnd implements WidgetHost {
  readonly connected = true;
  readonly models = new Map<string, HostedModel>();
  readonly sent: { id: string; data: Record<string, unknown> }[] = [];
  private n = 0;
  open(model: HostedModel) {
    const id = `w${++this.n}`;
    this.models.set(id, model);
    return { id, send: (data: Record<string, unknown>) => void this.sent.push({ id, data }), close: () => void this.models.delete(id) };
  }
  set(id: string, state: Record<string, unknown>) {
    this.models.get(id)!.receive({ method: "update", state, buffer_paths: [] }, [], { msg_id: `f${this.n}` });
  }
  click(id: string) {
    this.models.get(id)!.receive({ method: "custom", content: { event: "click" } }, [], null);
  }
}

function makeTrainer(runDir: string, extra: Partial<ConstructorParameters<typeof Trainer>[0]> = {}): Trainer {
  const rng = new Rng(11);
  const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
  return new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 11, batchSize: 4, maxLength: 32, lr: 1e-3, warmupSteps: 1, totalSteps: 6, runDir, ...extra });
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "controls-"));
const metrics = (dir: string) => fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));

test.before(async () => {
  corpus = await PackedCorpus.fromFile(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), tok, 32, { limit: 30 });
});

test("scripted slider moves during fit apply from the next step, are recorded, and a replay with no panel gives the same losses bit for bit", async () => {
  await use("cpu");
  const fe = new FrontEnd();
  const previous = setWidgetHost(fe);
  const dirA = tmp();
  let probes = 0;
  const a = makeTrainer(dirA, { hooks: [{ every: 0, name: "count", run: () => ({ probes: ++probes }) }] });
  const panel = a.controls();
  assert.is(a.controls(), panel, "one panel per trainer");
  const lossesA: number[] = [];
  const started = performance.now();
  let pausedFor = 0;
  const r = await a.fit({
    steps: 6,
    live: false,
    onEvent: (e) => {
      if (e.type !== "step") return;
      lossesA.push(e.loss);
      if (e.step === 2) fe.set(panel.encoderSlider.id, { value: 0.4 }); // the user moves a slider while step 2 is shown
      if (e.step === 3) {
        fe.set(panel.decoderSlider.id, { value: 0.7 });
        fe.set(panel.lrScaleSlider.id, { value: 0.5 });
        fe.click(panel.checkpointButton.id);
        fe.click(panel.probeButton.id);
      }
      if (e.step === 4) fe.set(panel.encoderSlider.id, { value: 1.2 }); // a stale front end sends a ratio out of range
      if (e.step === 5) {
        fe.set(panel.pauseButton.id, { value: true });
        const t0 = performance.now();
        setTimeout(() => {
          pausedFor = performance.now() - t0;
          fe.set(panel.pauseButton.id, { value: false });
        }, 60);
      }
    },
  });
  assert.is(r.status, "done");
  assert.is(lossesA.length, 6);
  assert.ok(performance.now() - started >= 60 && pausedFor >= 55, "the run held while paused");
  assert.is(probes, 1, "probe now ran the hooks once");
  assert.ok(fs.existsSync(path.join(dirA, "checkpoint-3")), "checkpoint now saved after step 3");
  assert.equal([a.encoderMaskRatio, a.decoderMaskRatio, a.lrScale], [0.4, 0.7, 0.5]);
  // the refused value: one sentence in the panel, the slider back to the ratio in force, the run went on
  const refusal = fe.sent.filter((s) => s.id === panel.message.id).map((s) => (s.data.state as { value?: string })?.value ?? "").find((v) => v.includes("refused"));
  assert.match(refusal!, /The encoder mask ratio must be a number in \[0, 1\); 1\.2 was refused and the run goes on with 0\.4\./);
  assert.is(panel.encoderSlider.value, 0.4);
  // recorded: metrics.jsonl and the settings history, with the step each applied from
  const changes = metrics(dirA).filter((m) => m.change).map((m) => [m.step, m.change.field, m.change.old, m.change.new, m.change.source]);
  assert.equal(changes, [[3, "encoderMaskRatio", 0.3, 0.4, "panel"], [4, "decoderMaskRatio", 0.5, 0.7, "panel"], [4, "lrScale", 1, 0.5, "panel"]]);
  const history = readSettingsHistory(dirA);
  assert.equal(history.map((c) => [c.step, c.field, c.old, c.new]), changes.map((c) => c.slice(0, 4)));
  // the lr in force: the schedule's times the scale, from step 4 on
  const schedule = new LrSchedule({ lr: 1e-3, totalSteps: 6, warmupSteps: 1 });
  const lrs = metrics(dirA).filter((m) => m.lr !== undefined).map((m) => m.lr);
  assert.equal(lrs, lrs.map((_: number, i: number) => schedule.at(i) * (i >= 3 ? 0.5 : 1)));
  // tensors stay flat across the steps, the panel's changes and requests included
  const held = metrics(dirA).filter((m) => m.numTensors !== undefined).map((m) => m.numTensors);
  assert.ok(held.every((n: number) => n === held[0]), `tensors ${held}`);
  // the chart marks each change at its step
  const fig = a.chart.figure().toMimeBundle()[PLOTLY_MIME] as { layout: { annotations: { text: string; x: number }[] } };
  assert.ok(fig.layout.annotations.some((n) => n.text === "enc 0.3→0.4" && n.x === 3) && fig.layout.annotations.some((n) => n.text === "lr × 1→0.5" && n.x === 4));
  a.controls().close();
  a.dispose();

  // the replay: a fresh trainer given the recorded changes, no panel
  setWidgetHost(previous);
  const dirB = tmp();
  const b = makeTrainer(dirB, { changes: readSettingsHistory(dirA) });
  const lossesB: number[] = [];
  await b.fit({ steps: 6, live: false, onEvent: (e) => e.type === "step" && lossesB.push(e.loss) });
  assert.equal(lossesB, lossesA, "bit for bit");
  assert.equal(readSettingsHistory(dirB).map((c) => [c.step, c.field, c.new, c.source]), history.map((c) => [c.step, c.field, c.new, c.source]));
  b.dispose();

  // resume from checkpoint-3: the changes from step 4 on are applied again, so steps 4..6 match
  const c = Trainer.resume(path.join(dirA, "checkpoint-3"), { tokenizer: tok, data: corpus, runDir: tmp() });
  assert.equal([c.encoderMaskRatio, c.decoderMaskRatio, c.lrScale], [0.4, 0.5, 1], "the checkpoint holds the settings of its step");
  const lossesC: number[] = [];
  await c.fit({ steps: 3, live: false, onEvent: (e) => e.type === "step" && lossesC.push(e.loss) });
  assert.equal(lossesC, lossesA.slice(3));
  assert.equal([c.decoderMaskRatio, c.lrScale], [0.7, 0.5]);
  c.dispose();
});

test("stop after this step ends the fit like an interrupt; the next fit goes on; bad changes are refused with one sentence", async () => {
  await use("cpu");
  const fe = new FrontEnd();
  const previous = setWidgetHost(fe);
  try {
    const t = makeTrainer(tmp(), { runDir: undefined });
    const panel = t.controls();
    assert.ok(fe.sent.length >= 0 && panel.checkpointButton.get("disabled"), "no runDir: checkpoint now is disabled");
    const r = await t.fit({ steps: 6, live: false, onEvent: (e) => e.type === "step" && e.step === 2 && fe.click(panel.stopButton.id) });
    assert.equal([r.status, r.stepsTaken, t.step], ["stopped", 2, 2]);
    const again = await t.fit({ steps: 1, live: false });
    assert.equal([again.status, t.step], ["done", 3]);
    assert.match(String(panel.status.get("value")), /step 3 \/ 6/);
    assert.throws(() => t.change("decoderMaskRatio", -0.1), /The decoder mask ratio must be a number in \[0, 1\); -0\.1 was refused and the run goes on with 0\.5\./);
    assert.throws(() => t.change("lrScale", 0), /The lr scale must be a number in \(0, 100\]; 0 was refused and the run goes on with 1\./);
    assert.is(checkChange("batchSize", 4), '"batchSize" cannot be changed during a run (encoderMaskRatio, decoderMaskRatio, lrScale can).');
    const broken = tmp();
    fs.writeFileSync(path.join(broken, "settings-history.json"), '{"changes": [');
    assert.throws(() => readSettingsHistory(broken), /settings-history\.json is not valid JSON; restore it from the run's metrics\.jsonl change rows, or delete it to replay no changes\./);
    fs.writeFileSync(path.join(broken, "settings-history.json"), "{}");
    assert.throws(() => readSettingsHistory(broken), /holds no "changes" list; it is not a settings history written by this package\./);
    assert.throws(() => t.checkpointNow(), /This trainer has no runDir; pass \{ runDir \} to save checkpoints\./);
    assert.throws(() => makeTrainer(tmp(), { changes: [{ step: 0, field: "lrScale", old: 1, new: 2, source: "x" }] }), /A recorded change cannot be replayed .*its step must be a whole number ≥ 1/);
    t.dispose();
  } finally {
    setWidgetHost(previous);
  }
});

test("on webgpu the panel steers a queued-ahead, replayed fit: a change applies after the step already queued, the new shapes are replayed again, and the recorded changes repeat the losses bit for bit", async () => {
  useSoftwareVulkan();
  await use("webgpu");
  const texts = fs.readFileSync(path.join(SHARED_DATA, "beir-scifact", "corpus.jsonl"), "utf8").trim().split("\n").slice(0, 200).map((l) => (JSON.parse(l) as { text: string }).text);
  const micro = microTokenizer(texts);
  const data = PackedCorpus.fromTexts(texts, micro, 16);
  const make = (runDir: string, extra: Partial<ConstructorParameters<typeof Trainer>[0]> = {}) => {
    const rng = new Rng(13);
    return new Trainer({ model: microModel(micro.vocab.size, 13), tokenizer: micro, data, rng, seed: 13, batchSize: 2, maxLength: 16, lr: 1e-3, warmupSteps: 1, totalSteps: 10, runDir, ...extra });
  };
  const fe = new FrontEnd();
  const previous = setWidgetHost(fe);
  try {
    const dirA = tmp();
    const a = make(dirA);
    const panel = a.controls();
    const lossesA: number[] = [];
    await a.fit({
      steps: 9,
      live: false,
      onEvent: (e) => {
        if (e.type !== "step") return;
        lossesA.push(e.loss);
        if (e.step === 2) fe.set(panel.encoderSlider.id, { value: 0.15 }); // shown at step 2, step 3 already queued
        if (e.step === 5) fe.set(panel.lrScaleSlider.id, { value: 0.5 });
      },
    });
    const changes = metrics(dirA).filter((m) => m.change).map((m) => [m.step, m.change.field, m.change.new]);
    assert.equal(changes, [[4, "encoderMaskRatio", 0.15], [7, "lrScale", 0.5]], "each from the step after the one already queued");
    const recorded = a.recordedSteps!;
    assert.is(recorded.refused, null, JSON.stringify(recorded));
    assert.ok(recorded.replayed >= 4, `replayed again after the new ratio: ${JSON.stringify(recorded)}`);
    a.controls().close();
    a.model.dispose();
    a.dispose();
    // the same run from the recorded changes, no panel: the same losses, bit for bit
    setWidgetHost(previous);
    const b = make(tmp(), { changes: readSettingsHistory(dirA) });
    const lossesB: number[] = [];
    await b.fit({ steps: 9, live: false, onEvent: (e) => e.type === "step" && lossesB.push(e.loss) });
    assert.equal(lossesB, lossesA);
    b.model.dispose();
    b.dispose();
    // stop after this step: the fit ends after the step already queued
    setWidgetHost(fe);
    const c = make(tmp(), { runDir: undefined });
    const stop = c.controls();
    const r = await c.fit({ steps: 6, live: false, onEvent: (e) => e.type === "step" && e.step === 2 && fe.click(stop.stopButton.id) });
    assert.equal([r.status, r.stepsTaken, c.step], ["stopped", 3, 3]);
    c.controls().close();
    c.model.dispose();
    c.dispose();
  } finally {
    setWidgetHost(previous);
  }
});

test.run();
