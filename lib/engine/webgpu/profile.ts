/**
 * Where a training step's GPU time goes: the times of a profiled step's
 * dispatches (StepReplay.profile, through Trainer.profile), grouped by
 * kernel and by kind of work, as a table.
 *
 * Each dispatch is timed in a compute pass of its own, between two GPU
 * timestamps: the time the GPU spent on it alone. Their sum is the step's
 * work; what a normal step takes beyond it (its wall time less this sum)
 * is what runs between dispatches: barriers, idle gaps, the host.
 */
import type { KernelLabel } from "./replay";

/** One kernel (a shader at one output shape): its dispatches in the step, their time, and for a matmul its rate. */
export interface KernelTime {
  kernel: string;
  category: string;
  /** The output's shape, where the dispatch was one of tfjs's programs. */
  output?: number[];
  /** The inputs' shapes of its first dispatch. */
  inputs?: number[][];
  calls: number;
  ms: number;
  /** Of the step's GPU time. */
  share: number;
  /** Floating-point operations per second (10⁹), for a matmul. */
  gflops?: number;
}

export interface StepProfile {
  /** The optimizer step that was profiled. */
  step: number;
  dispatches: number;
  /** The sum of every dispatch's GPU time. */
  gpuMs: number;
  /** By kind of work, most time first. */
  categories: { category: string; calls: number; ms: number; share: number; gflops?: number }[];
  /** By kernel and output shape, most time first. */
  kernels: KernelTime[];
  /** The adapter the times come from (not a GPU figure where it is a software one). */
  adapter: string;
}

/** The kind of work a kernel does, from its shader key or label. */
export function kernelCategory(kernel: string): string {
  const rules: [RegExp, string][] = [
    [/^matMul|^retromaeMatMul|^retromaeHeadMatMul|^retromaeColumnSum_pat$/, "matmul"], // (the column sum of a matmul split along K adds its parts; the attention's products on heads in place)
    [/LogSumExp|SoftmaxMinusOneHot|ArgMax|PickLabels|MeanNll/, "cross-entropy"],
    [/Attention|Softmax|AdditiveMask/i, "attention"], // (the additive mask: the decoder attention mask widened from its bytes)
    [/LayerNorm/, "layer norm"],
    [/ColumnSum/, "bias gradients"],
    [/Gelu/, "gelu"],
    [/Dropout/, "dropout"],
    [/^gather|SegmentSum|SegmentLinks|Zeros|EmbeddingTables/, "embeddings"],
    [/AdamW|SumSquares|GlobalNorm/, "optimizer"],
    [/^(transpose|slice|pad|concat)|^retromae(Un)?stackRows/i, "layout"], // (a stacked projection's weights, and their gradients given back)
    [/^reduce/, "reductions"],
    [/^(binary|unary|fill|select|cast|clip)/, "elementwise"],
  ];
  for (const [re, name] of rules) if (re.test(kernel)) return name;
  return "other";
}

/** Group a profiled step's dispatch times. */
export function summarizeProfile(times: (KernelLabel & { ms: number })[], step: number, adapter: string): StepProfile {
  const gpuMs = times.reduce((a, t) => a + t.ms, 0);
  const kernels = new Map<string, KernelTime & { flops: number }>();
  const categories = new Map<string, { category: string; calls: number; ms: number; share: number; flops: number }>();
  for (const t of times) {
    const key = `${t.kernel} ${JSON.stringify(t.output ?? null)}`;
    const category = kernelCategory(t.kernel);
    let k = kernels.get(key);
    if (!k) kernels.set(key, (k = { kernel: t.kernel, category, ...(t.output ? { output: t.output } : {}), ...(t.inputs ? { inputs: t.inputs } : {}), calls: 0, ms: 0, share: 0, flops: 0 }));
    k.calls++;
    k.ms += t.ms;
    k.flops += t.flops ?? 0;
    let c = categories.get(category);
    if (!c) categories.set(category, (c = { category, calls: 0, ms: 0, share: 0, flops: 0 }));
    c.calls++;
    c.ms += t.ms;
    c.flops += t.flops ?? 0;
  }
  // three significant digits: a micro model's matmuls run at hundredths of a GFLOP/s on a software adapter
  const rate = (flops: number, ms: number) => (flops > 0 && ms > 0 ? { gflops: +(flops / ms / 1e6).toPrecision(3) } : {});
  const share = (ms: number) => (gpuMs > 0 ? +(ms / gpuMs).toFixed(4) : 0);
  return {
    step,
    dispatches: times.length,
    gpuMs: +gpuMs.toFixed(4),
    categories: [...categories.values()]
      .sort((a, b) => b.ms - a.ms)
      .map(({ flops, ...c }) => ({ ...c, ms: +c.ms.toFixed(4), share: share(c.ms), ...rate(flops, c.ms) })),
    kernels: [...kernels.values()]
      .sort((a, b) => b.ms - a.ms)
      .map(({ flops, ...k }) => ({ ...k, ms: +k.ms.toFixed(4), share: share(k.ms), ...rate(flops, k.ms) })),
    adapter,
  };
}

/** The profile as a text table: the kinds of work, then the `top` kernels. */
export function formatProfile(p: StepProfile, top = 15): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padStart(6);
  const ms = (x: number) => x.toFixed(3).padStart(9);
  const lines = [`step ${p.step}: ${p.dispatches} dispatches, ${p.gpuMs.toFixed(3)} ms of GPU time on ${p.adapter}`, "", "    GPU ms  share  calls  kind"];
  for (const c of p.categories) lines.push(`${ms(c.ms)} ${pct(c.share)} ${String(c.calls).padStart(6)}  ${c.category}${c.gflops ? ` (${c.gflops} GFLOP/s)` : ""}`);
  lines.push("", "    GPU ms  share  calls  kernel (output shape)");
  for (const k of p.kernels.slice(0, top)) {
    lines.push(`${ms(k.ms)} ${pct(k.share)} ${String(k.calls).padStart(6)}  ${k.kernel}${k.output ? ` [${k.output.join("×")}]` : ""}${k.gflops ? ` ${k.gflops} GFLOP/s` : ""}`);
  }
  if (p.kernels.length > top) lines.push(`   … ${p.kernels.length - top} more kernels`);
  return lines.join("\n");
}

/**
 * Count the compute dispatches recorded on `device` from now on (every pass
 * encoder shares one prototype): the counter, for benchmarks and tests.
 */
export function countDispatches(device: GPUDevice): () => number {
  const pass = device.createCommandEncoder().beginComputePass();
  const proto = Object.getPrototypeOf(pass) as GPUComputePassEncoder;
  pass.end();
  const original = proto.dispatchWorkgroups;
  let n = 0;
  proto.dispatchWorkgroups = function (this: GPUComputePassEncoder, ...args: Parameters<GPUComputePassEncoder["dispatchWorkgroups"]>) {
    n++;
    return original.apply(this, args);
  };
  return () => n;
}
