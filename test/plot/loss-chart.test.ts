import { test } from "uvu";
import * as assert from "uvu/assert";
import { labelRuns, LossChart } from "../../lib/plot/loss-chart";
import { PLOTLY_MIME } from "../../lib/plot/figure";

test("run labels: a run's name, else the settings that differ, else the mask ratios", () => {
  assert.equal(labelRuns([{ name: "RetroMAE", encoderMaskRatio: 0.3 }, { name: "MLM only", encoderMaskRatio: 0.3 }]), ["RetroMAE", "MLM only"]);
  assert.equal(labelRuns([{ encoderMaskRatio: 0.3, decoderMaskRatio: 0.5 }, { encoderMaskRatio: 0.15, decoderMaskRatio: 0.5 }]), ["enc 0.3", "enc 0.15"]);
  assert.equal(labelRuns([{ encoderMaskRatio: 0.3, decoderMaskRatio: 0.5 }]), ["enc 0.3 / dec 0.5"]);
});

test("the chart overlays runs under their labels", () => {
  const chart = new LossChart("t");
  const a = chart.addRun({ name: "A" });
  a.steps.push(1);
  a.loss.push(2);
  chart.addRun({ name: "B" });
  const fig = chart.figure().toMimeBundle()[PLOTLY_MIME] as { data: { name: string }[] };
  assert.ok(fig.data.some((t) => t.name === "A: total"));
  assert.ok(fig.data.some((t) => t.name === "B: total"));
});

test.run();
