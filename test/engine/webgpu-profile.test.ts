/**
 * A training step's GPU time by kernel (lib/engine/webgpu/profile.ts, the
 * timed replay in replay.ts and Trainer.profile): the grouping and the table
 * from given times, and on Dawn's Null backend (which runs nothing, so no
 * times) that every dispatch of a step is labelled and counted. That the
 * times are the GPU's, and that a profiled step is the plain step bit for
 * bit, is tested on SwiftShader (webgpu.test.ts).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as path from "path";
import * as tf from "../../lib/engine/tf";
import { Rng } from "../../lib/engine/rng";
import { use } from "../../lib/engine/backend";
import { NULL_ADAPTER } from "../../lib/engine/webgpu/dawn";
import { DENSE_WEIGHT_GRADS } from "../../lib/engine/fused";
import { startWebGPU, stopWebGPU } from "../../lib/engine/webgpu/backend";
import { formatProfile, kernelCategory, summarizeProfile } from "../../lib/engine/webgpu/profile";
import { recordCommands, StepReplay } from "../../lib/engine/webgpu/replay";
import { loadBeir } from "../../lib/data/beir";
import { PackedCorpus } from "../../lib/train/data";
import { Trainer } from "../../lib/train/trainer";
import { BertTokenizer } from "../../lib/text/tokenizer";
import { RetroMAE } from "../../lib/model/retromae";
import { SHARED_DATA } from "../helpers";

/** The message a promise rejects with ("" if it resolves). */
const failure = (p: Promise<unknown>) => p.then(() => "", (e: Error) => e.message);

test("kernels are sorted into kinds of work by their shader keys", () => {
  const kinds: [string, string][] = [
    ["matMulPacked_4,4,1_false_true_linear_false", "matmul"],
    ["matMulSmallOutputSize_null_true_false", "matmul"],
    ["retromaeMatMulSplitK_true_false", "matmul"],
    ["retromaeMatMulSplitK_true_false_rowSums", "matmul"], // (with a dense layer's bias gradient)
    ["retromaeMatMulSumOfParts_2", "matmul"],
    ["retromaeHeadMatMul_false_true", "matmul"],
    ["retromaeColumnSum_pat", "matmul"],
    ["retromaeSoftmaxMinusOneHotWeighted_64", "cross-entropy"],
    ["retromaeLogSumExp_64", "cross-entropy"],
    ["retromaePickLabels", "cross-entropy"],
    ["retromaeMeanNllAccuracy_weighted", "cross-entropy"],
    ["retromaeEmbeddingTablesGrad_positions", "embeddings"],
    ["retromaeScaledMaskedSoftmax_64", "attention"],
    ["retromaeAttention_64_12_32", "attention"],
    ["retromaeAddLayerNorm_residual_stats", "layer norm"],
    ["retromaeLayerNormGammaBeta", "layer norm"],
    ["retromaeColumnSum_xat", "bias gradients"],
    ["retromaeColumnSum_xatRuns", "bias gradients"],
    ["retromaeAdditiveMaskOfBytes", "attention"],
    ["retromaeGeluGrad", "gelu"],
    ["retromaeDropout_based", "dropout"],
    ["gather", "embeddings"],
    ["retromaeSegmentSum_float32", "embeddings"],
    ["retromaeSegmentLinks", "embeddings"],
    ["retromaeAdamW_guarded_scaled_tensor", "optimizer"],
    ["retromaeSumSquares_11", "optimizer"],
    ["transpose_0,2,1,3", "layout"],
    ["retromaeStackRows_3_3", "layout"],
    ["retromaeUnstackRows_2_2", "layout"],
    ["reduce_sum", "reductions"],
    ["binary_0_4,4", "elementwise"],
    ["something new", "other"],
  ];
  for (const [kernel, kind] of kinds) assert.is(kernelCategory(kernel), kind, kernel);
});

test("a profile groups dispatches by kernel and output shape and by kind, most time first, with shares and a matmul's rate", () => {
  const times = [
    { kernel: "matMulPacked_x", inputs: [[1, 64, 32], [1, 32, 16]], output: [1, 64, 16], flops: 2e9, ms: 1 },
    { kernel: "matMulPacked_x", inputs: [[1, 64, 32], [1, 32, 16]], output: [1, 64, 16], flops: 2e9, ms: 3 },
    { kernel: "matMulPacked_x", inputs: [[1, 8, 32], [1, 32, 16]], output: [1, 8, 16], flops: 1e6, ms: 0.5 },
    { kernel: "binary_0_4,4", inputs: [[64, 16], [64, 16]], output: [64, 16], ms: 0.25 },
    { kernel: "retromaeAdamW_guarded_scaled_tensor", ms: 0.25 },
  ];
  const p = summarizeProfile(times, 7, "a test adapter");
  assert.is(p.step, 7);
  assert.is(p.dispatches, 5);
  assert.is(p.gpuMs, 5);
  assert.equal(
    p.kernels.map((k) => [k.kernel, k.output ?? null, k.calls, k.ms, k.share]),
    [
      ["matMulPacked_x", [1, 64, 16], 2, 4, 0.8],
      ["matMulPacked_x", [1, 8, 16], 1, 0.5, 0.1],
      ["binary_0_4,4", [64, 16], 1, 0.25, 0.05],
      ["retromaeAdamW_guarded_scaled_tensor", null, 1, 0.25, 0.05],
    ],
  );
  assert.is(p.kernels[0].gflops, 1000); // 4e9 operations in 4 ms
  assert.is(p.kernels[2].gflops, undefined);
  assert.equal(
    p.categories.map((c) => [c.category, c.calls, c.ms]),
    [
      ["matmul", 3, 4.5],
      ["elementwise", 1, 0.25],
      ["optimizer", 1, 0.25],
    ],
  );
  const table = formatProfile(p, 2);
  assert.match(table, /^step 7: 5 dispatches, 5\.000 ms of GPU time on a test adapter/);
  assert.match(table, /4\.500\s+90\.0%\s+3\s+matmul \(889 GFLOP\/s\)/);
  assert.match(table, /4\.000\s+80\.0%\s+2\s+matMulPacked_x \[1×64×16\] 1000 GFLOP\/s/);
  assert.match(table, /… 2 more kernels$/);
  assert.equal(summarizeProfile([], 1, "x").kernels, []);
});

test("on Dawn's Null backend: a replayed step's dispatches each carry their kernel (tfjs's shader key, shapes, a matmul's operations, or a raw shader's pipeline label)", async () => {
  await startWebGPU({ allowSoftware: true, adapterName: NULL_ADAPTER });
  const W = tf.variable(tf.tensor2d(new Rng(3).fillNormal(new Float32Array(16 * 8)), [16, 8]));
  const step = (x: Float32Array) =>
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.softmax(tf.matMul(tf.tensor2d(x, [6, 16]), W))) as tf.Scalar, [W]);
      return [value, grads[W.name]];
    });
  for (const s of [90, 91]) tf.dispose(step(new Rng(s).fillNormal(new Float32Array(96))));
  const [a, b] = [1, 2].map((s) => {
    const x = new Rng(s).fillNormal(new Float32Array(96));
    const r = recordCommands(() => step(x), { inputs: [x], state: [W] });
    tf.dispose(r.result);
    return r;
  });
  const replay = StepReplay.build(a, b);
  if (!(replay instanceof StepReplay)) throw new Error(`refused: ${replay.refused}`);
  const { outputs, times } = replay.profile([new Rng(3).fillNormal(new Float32Array(96))]);
  const got = await times;
  assert.is(got.length, replay.dispatches);
  const forward = got.find((t) => /^matMul/.test(t.kernel) && t.output?.join() === "1,6,8");
  assert.ok(forward, JSON.stringify(got.map((t) => t.kernel)));
  assert.is(forward!.flops, 2 * 6 * 8 * 16);
  assert.equal(forward!.inputs, [[1, 6, 16], [1, 16, 8]]);
  assert.ok(got.every((t) => t.kernel.length > 0 && !/unlabelled/.test(t.kernel)));
  tf.dispose(outputs);
  replay.dispose();
  W.dispose();
});

test("on Dawn's Null backend: a raw dispatch carries its key, and a raw matmul its operations (a dense layer's weight and bias gradients split along the rows)", async () => {
  await startWebGPU({ allowSoftware: true, adapterName: NULL_ADAPTER });
  const step = (dy: Float32Array, x: Float32Array) => tf.tidy(() => tf.engine().runKernel(DENSE_WEIGHT_GRADS, { dy: tf.tensor2d(dy, [2048, 24]), x: tf.tensor2d(x, [2048, 40]) }, {}) as tf.Tensor[]);
  const inputs = (s: number) => [new Rng(s).fillNormal(new Float32Array(2048 * 24)), new Rng(s + 1).fillNormal(new Float32Array(2048 * 40))];
  const [a, b] = [1, 3].map((s) => {
    const ins = inputs(s);
    const r = recordCommands(() => step(ins[0], ins[1]), { inputs: ins, state: [] });
    tf.dispose(r.result);
    return r;
  });
  const replay = StepReplay.build(a, b);
  if (!(replay instanceof StepReplay)) throw new Error(`refused: ${replay.refused}`);
  const { outputs, times } = replay.profile(inputs(5));
  const got = await times;
  assert.equal(got.map((t) => t.kernel), ["retromaeMatMulSplitK_true_false_rowSums", "retromaeMatMulSumOfParts_2"]);
  assert.is(got[0].flops, 2 * 24 * 40 * 2048);
  assert.is(got[1].flops, undefined);
  tf.dispose(outputs);
  replay.dispose();
});

test("Trainer.profile on the Null backend: every dispatch of the step counted and named, no times; off webgpu, or with recordSteps false, one sentence", async () => {
  await startWebGPU({ allowSoftware: true, adapterName: NULL_ADAPTER });
  const tok = BertTokenizer.bertBaseUncased();
  const texts = [...loadBeir(path.join(SHARED_DATA, "beir-scifact")).corpus.values()].slice(0, 200).map((d) => d.text);
  const corpus = PackedCorpus.fromTexts(texts, tok, 32);
  const make = (recordSteps?: boolean) => {
    const rng = new Rng(1);
    const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 16, intermediateSize: 64 } });
    return new Trainer({ model, tokenizer: tok, data: corpus, rng, seed: 1, batchSize: 2, maxLength: 32, totalSteps: 40, recordSteps });
  };
  const t = make();
  const before = tf.memory().numTensors;
  const p = await t.profile(); // no step replayed yet: it records one first
  assert.ok(p.step >= 3 && p.step <= 5, `the step timed: ${p.step}`);
  assert.is(t.step, p.step);
  assert.is(p.dispatches, t.recordedSteps!.dispatches);
  assert.is(p.gpuMs, 0);
  assert.match(p.adapter, /Null backend/);
  assert.ok(p.kernels.every((k) => k.category !== "other"), JSON.stringify(p.kernels.filter((k) => k.category === "other").map((k) => k.kernel)));
  const logits = p.kernels.filter((k) => k.category === "matmul" && k.output?.includes(30522));
  assert.ok(logits.length >= 2, "the tied logits and their gradient are matmuls over the vocabulary");
  assert.ok(!p.kernels.some((k) => k.category === "matmul" && k.output?.[1] === 1), "no matrix-vector product for the weighted bias gradient");
  const again = await t.profile(); // now one step, replayed
  assert.is(again.step, p.step + 1);
  assert.is(tf.memory().numTensors, before, "no tensor left behind");
  t.model.dispose();
  t.dispose();
  const plain = make(false);
  assert.match(await failure(plain.profile()), /^Trainer\.profile times a step's GPU dispatches on webgpu with recorded steps; this trainer runs on webgpu with recordSteps: false/);
  plain.model.dispose();
  plain.dispose();
  stopWebGPU();
  await use("cpu");
  const cpu = make();
  assert.match(await failure(cpu.profile()), /this trainer runs on cpu \(use backend\.use\("webgpu"\)/);
  cpu.model.dispose();
  cpu.dispose();
});

test.run();
