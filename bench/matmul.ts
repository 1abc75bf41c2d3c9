/**
 * `npm run bench -- matmul [--backend native,wasm,cpu] [--seconds S]`
 * GFLOP/s of a 1024x256x8000 float32 matmul, one JSON line per backend (for
 * native, one per GEMM the addon has: OpenBLAS and the bundled one, side by
 * side, with `ratio_vs_openblas`), then PyTorch in the same run when
 * a python3 has torch (torchPython in common.ts).
 */
import * as tf from "../lib/engine/tf";
import { use } from "../lib/engine/backend";
import { loadAddon } from "../lib/engine/native";
import { emit, nativeGemms, NO_TORCH, option, runTorch, torchAvailable, TORCH_ENVS } from "./common";

const M = 1024;
const K = 256;
const N = 8000;

export async function benchMatmul(args: string[]): Promise<void> {
  const backends = (option(args, "backend") ?? "native,wasm,cpu").split(",").flatMap((b) => (b === "native" ? nativeGemms().map((g) => `native@${g}`) : [b]));
  const seconds = Number(option(args, "seconds") ?? 3);
  const flops = 2 * M * K * N;
  let openblasGflops: number | null = null;
  for (const spec of backends) {
    const [name, gemm] = spec.split("@");
    const choice = await use(name);
    if (gemm) loadAddon()!.gemm(gemm);
    const a = tf.randomNormal([M, K], 0, 1, "float32", 1);
    const b = tf.randomNormal([K, N], 0, 1, "float32", 2);
    tf.matMul(a, b).dispose(); // warm-up
    const times: number[] = [];
    const start = performance.now();
    while (performance.now() - start < seconds * 1000 || times.length < 2) {
      const t = performance.now();
      const c = tf.matMul(a, b);
      c.dataSync();
      times.push(performance.now() - t);
      c.dispose();
    }
    tf.dispose([a, b]);
    times.sort((x, y) => x - y);
    const median = times[Math.floor(times.length / 2)];
    const gflops = flops / (median / 1000) / 1e9;
    if (gemm === "openblas") openblasGflops = gflops;
    emit({
      bench: "matmul",
      shape: [M, K, N],
      backend: choice.backend,
      ...(gemm ? { gemm: loadAddon()!.gemm() } : {}),
      ...(gemm === "bundled" && openblasGflops ? { ratio_vs_openblas: +(gflops / openblasGflops).toFixed(3) } : {}),
      gflops: +gflops.toFixed(2),
      gflops_best: +(flops / (times[0] / 1000) / 1e9).toFixed(2),
      ms_median: +median.toFixed(2),
      runs: times.length,
    });
  }
  if (!torchAvailable()) {
    emit({ bench: "matmul", backend: "torch", skipped: NO_TORCH });
    return;
  }
  for (const { name, env } of TORCH_ENVS) {
    emit({ bench: "matmul", shape: [M, K, N], torch_env: name, ...runTorch("matmul.py", [String(M), String(K), String(N), "--seconds", String(seconds)], env) });
  }
}
