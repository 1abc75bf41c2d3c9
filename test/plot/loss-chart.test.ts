import { test } from "uvu";
import * as assert from "uvu/assert";
import { decimate, emaSmooth, labelRuns, LossChart } from "../../lib/plot/loss-chart";
import { progressText } from "../../lib/plot/progress";
import { PLOTLY_MIME } from "../../lib/plot/figure";

test("run labels: a run's name, else the settings that differ, else the mask ratios", () => {
  assert.equal(labelRuns([{ name: "RetroMAE", encoderMaskRatio: 0.3 }, { name: "MLM only", encoderMaskRatio: 0.3 }]), ["RetroMAE", "MLM only"]);
  assert.equal(labelRuns([{ encoderMaskRatio: 0.3, decoderMaskRatio: 0.5 }, { encoderMaskRatio: 0.15, decoderMaskRatio: 0.5 }]), ["enc 0.3", "enc 0.15"]);
  assert.equal(labelRuns([{ encoderMaskRatio: 0.3, decoderMaskRatio: 0.5 }]), ["enc 0.3 / dec 0.5"]);
});

type Trace = { name: string; x: number[]; y: number[]; yaxis?: string; showlegend?: boolean; opacity?: number };
type Fig = { data: Trace[]; layout: Record<string, any> };
const figOf = (chart: LossChart) => chart.figure().toMimeBundle()[PLOTLY_MIME] as Fig;

function feed(chart: LossChart, name: string, steps: number, decoder: boolean) {
  const r = chart.addRun({ name });
  for (let s = 1; s <= steps; s++) {
    const enc = 8 - Math.log(s) / 3 + (s % 2 ? 0.2 : -0.2);
    r.add({ type: "step", step: s, loss: enc + (decoder ? 7 : 0), encoderLoss: enc, decoderLoss: decoder ? 7 : NaN, lr: 1e-4 });
  }
  return r;
}

test("panels compare like with like: encoder MLM loss for every run, decoder loss for runs with one, probe with reference lines, lr small", () => {
  const chart = new LossChart("t");
  feed(chart, "RetroMAE", 50, true);
  const mlm = feed(chart, "MLM only", 50, false);
  mlm.add({ type: "eval", step: 50, metrics: { "NDCG@10": 0.012 } });
  chart.addReference("start", 0.0099).addReference("BM25", 0.6869);
  const fig = figOf(chart);
  const axisOf = (title: string) => Object.entries(fig.layout).find(([k, v]) => k.startsWith("yaxis") && v.title?.text === title)![0].replace("axis", "");
  const [enc, dec, probe] = ["encoder MLM loss", "decoder loss", "NDCG@10"].map(axisOf);
  assert.ok(fig.data.some((t) => t.name === "RetroMAE" && t.yaxis === enc) && fig.data.some((t) => t.name === "MLM only" && t.yaxis === enc), "both runs on the encoder panel");
  assert.is(fig.data.filter((t) => t.yaxis === dec).map((t) => t.name).every((n) => n.startsWith("RetroMAE")), true, "only RetroMAE on the decoder panel");
  assert.not.ok(fig.data.some((t) => /total/.test(t.name)), "totals are not comparable, so not drawn");
  assert.ok(fig.data.some((t) => t.name === "MLM only: NDCG@10" && t.yaxis === probe));
  // the axis spans the runs and the start's line; BM25, far above, is named at the panel's top edge
  const range = fig.layout[`yaxis${probe.slice(1)}`].range;
  assert.ok(range[0] === 0 && range[1] > 0.012 && range[1] < 0.05, `${range}`);
  assert.equal(fig.layout.shapes.map((s: any) => s.y0), [0.0099]);
  assert.match(fig.layout.annotations[0].text, /^start 0\.010$/);
  assert.match(fig.layout.annotations[1].text, /^BM25 0\.687 \(above\)$/);
  assert.is(fig.layout[`yaxis${probe.slice(1)}`].tickformat, ".3~f", "probe ticks read as numbers");
  // only nDCG@10 is drawn when a run reports it; other metrics on request
  mlm.add({ type: "eval", step: 60, metrics: { "NDCG@10": 0.02, "Recall@100": 0.2 } });
  assert.not.ok(figOf(chart).data.some((t) => t.name.endsWith("Recall@100")));
  const both = new LossChart("t", { probeMetrics: ["NDCG@10", "Recall@100"] });
  both.runs.push(mlm);
  assert.ok(figOf(both).data.some((t) => t.name === "MLM only: Recall@100"));
  const lr = Object.values(fig.layout).find((v: any) => v?.title?.text === "lr") as any;
  assert.ok(lr.domain[1] - lr.domain[0] < 0.15, "lr in a small panel");
  assert.not.ok(Object.values(figOf(new LossChart("t", { showLr: false })).layout).some((v: any) => v?.title?.text === "lr"));
  // the log-y toggle relayouts both loss axes
  const log = fig.layout.updatemenus[0].buttons.find((b: any) => b.label === "log").args[0];
  assert.equal(Object.keys(log).sort(), [`yaxis${enc.slice(1)}.type`, `yaxis${dec.slice(1)}.type`].sort());
  assert.throws(() => chart.addReference("x", NaN), /needs a finite score/);
});

test("a geometry panel beside the probe: anisotropy left, effective rank on a right-hand axis, each metric at its own steps", () => {
  const chart = new LossChart("t");
  const r = feed(chart, "RetroMAE", 20, true);
  // the probe and the geometry hooks report separately, the geometry less often
  r.add({ type: "eval", step: 10, metrics: { "NDCG@10": 0.02 } });
  r.add({ type: "eval", step: 10, metrics: { anisotropy: 0.9, uniformity: -0.3, "effective rank": 4.2, alignment: 0.1 } });
  r.add({ type: "eval", step: 20, metrics: { "NDCG@10": 0.03 } });
  const fig = figOf(chart);
  const probe = fig.data.find((t) => t.name === "RetroMAE: NDCG@10")!;
  assert.equal([probe.x, probe.y], [[10, 20], [0.02, 0.03]], "the probe's points at the probe's steps");
  const aniso = fig.data.find((t) => t.name === "RetroMAE: anisotropy")!;
  const rank = fig.data.find((t) => t.name === "RetroMAE: effective rank")!;
  assert.equal([aniso.x, aniso.y, rank.x, rank.y], [[10], [0.9], [10], [4.2]]);
  const geoAxis = Object.entries(fig.layout).find(([k, v]) => k.startsWith("yaxis") && v.title?.text === "anisotropy")![0];
  assert.is(aniso.yaxis, geoAxis.replace("axis", ""));
  const rankLayout = fig.layout[rank.yaxis!.replace("y", "yaxis")];
  assert.equal([rankLayout.side, rankLayout.overlaying, rankLayout.title.text], ["right", aniso.yaxis, "effective rank"]);
  assert.not.ok(fig.data.some((t) => /uniformity|alignment/.test(t.name)), "only the chosen geometry metrics are drawn");
  assert.not.ok(fig.data.some((t) => t.name.endsWith("anisotropy") && t.yaxis === probe.yaxis), "geometry stays off the probe panel");
  const uni = new LossChart("t", { geometryMetrics: ["uniformity"] });
  uni.runs.push(r);
  assert.ok(figOf(uni).data.some((t) => t.name === "RetroMAE: uniformity"));
  assert.throws(() => new LossChart("t", { geometryMetrics: ["NDCG@10"] }), /"NDCG@10" is not a geometry metric; use some of "anisotropy", "uniformity", "alignment", "effective rank"\./);
  // a chart of geometry alone (no probe) draws no probe panel
  const alone = new LossChart("t");
  feed(alone, "x", 5, false).add({ type: "eval", step: 5, metrics: { anisotropy: 0.5 } });
  assert.not.ok(Object.values(figOf(alone).layout).some((v: any) => v?.title?.text === "NDCG@10"));
});

test("EMA smoothing is TensorBoard's debiased one; raw values stay drawn faintly", () => {
  const v = [1, 2, 3, 4];
  // last = 0.4, 1.04, 1.824, 2.6944; divided by 1 - 0.6^n = 0.4, 0.64, 0.784, 0.8704
  const s = emaSmooth(v, 0.6);
  [1, 1.625, 2.3265, 3.0956].forEach((e, i) => assert.ok(Math.abs(s[i] - e) < 1e-3, `${s[i]} vs ${e}`));
  assert.equal(emaSmooth(v, 0), v);
  assert.equal(emaSmooth([NaN, 2], 0.5).slice(1), [2], "a NaN does not enter the average");
  assert.throws(() => emaSmooth(v, 1), /smoothing must be in \[0, 1\), got 1; TensorBoard's default is 0\.6/);
  const chart = new LossChart("t", { smoothing: 0.9 });
  feed(chart, "A", 20, true);
  const fig = figOf(chart);
  const raw = fig.data.find((t) => t.name === "A (raw)")!;
  const smooth = fig.data.find((t) => t.name === "A")!;
  assert.ok(raw.opacity! < 0.5);
  const wiggle = (ys: number[]) => ys.slice(1).reduce((a, y, i) => a + Math.abs(y - ys[i]), 0);
  assert.ok(wiggle(smooth.y) < wiggle(raw.y) / 2, "smoothed is calmer");
});

test("old points are decimated, so an update's size stays flat as steps grow; the newest stay exact", () => {
  const xs = Array.from({ length: 5000 }, (_, i) => i + 1);
  const d = decimate(xs, xs.map((x) => x * 2), 1000);
  assert.is(d.x.length, 1000);
  assert.equal(d.x.slice(-500), xs.slice(-500));
  assert.is(d.x[0], 9, "the first bucket ends at step 9 (4,500 old points in 500 buckets)");
  assert.is(d.y[0], 10, "its mean: 2 × mean(1..9)");
  assert.equal(decimate([1, 2], [3, 4], 10), { x: [1, 2], y: [3, 4] });
  const size = (steps: number) => {
    const chart = new LossChart("t");
    feed(chart, "A", steps, true);
    return JSON.stringify(figOf(chart)).length;
  };
  const [a, b] = [size(2000), size(20000)];
  assert.ok(b < a * 1.2, `${a} bytes at 2,000 steps, ${b} at 20,000`);
});

test("an MLM-only progress line shows the encoder loss alone, never dec NaN", () => {
  const p = { step: 5, totalSteps: 10, elapsedMs: 5000, tokensPerSec: 100, loss: 6.5, encoderLoss: 6.5, decoderLoss: NaN, status: "running" };
  assert.match(progressText(p), /loss 6\.5000 \(enc 6\.500\)$/);
  assert.match(progressText({ ...p, decoderLoss: 7 }), /\(enc 6\.500, dec 7\.000\)$/);
});

test.run();
