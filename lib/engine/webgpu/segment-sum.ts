/**
 * UnsortedSegmentSum (the gradient of `gather`, so of every embedding
 * lookup), deterministic, and EMBEDDING_GRAD (the same with the padding id's
 * rows left out). tfjs's own adds floats with atomics, whose order, and so
 * whose bits, change from run to run. Here each output element has one
 * owner: the first input row with its segment id, which sums every row of
 * that id in index order, as the cpu backend does. Bit for bit the cpu
 * backend's sum.
 */
import * as tf from "../tf";
import { EMBEDDING_GRAD } from "../fused";
import type { KernelConfig, TensorInfo } from "@tensorflow/tfjs-core";
import { flatProgram, ints, product, WebGPUBackendLike, zeros } from "./program";

/**
 * The rows' links for segmentSumProgram, one invocation per row i (O(n²)
 * reads of the ids, none of x): link[i] = 2·next + first, where next is the
 * first row after i with the same id (n where none) and first is 1 where no
 * row before i has it; -1 where ids[i] is outside [0, numSegments) (dropped,
 * as TensorFlow drops it) or is the `skip` uniform (an embedding's padding
 * id: fused.ts embeddingGrad; -1 skips nothing more). ids [n] -> [n] int32
 */
export function segmentLinksProgram(n: number) {
  const body = `
  fn main(index : i32) {
    let n = uniforms.rows;
    if (index >= n) { return; }
    let s = i32(segmentIds[index]);
    if (s < 0 || s >= uniforms.numSegments || s == uniforms.skip) { result[index] = -1; return; }
    var first = 1;
    for (var k = 0; k < index; k = k + 1) {
      if (i32(segmentIds[k]) == s) { first = 0; break; }
    }
    var next = n;
    for (var k = index + 1; k < n; k = k + 1) {
      if (i32(segmentIds[k]) == s) { next = k; break; }
    }
    result[index] = next * 2 + first;
  }`;
  return flatProgram(n, [n], ["segmentIds"], "retromaeSegmentLinks", "rows : i32, numSegments : i32, skip : i32,", body);
}

/**
 * out[s, j] = Σ x[i, j] over i with ids[i] = s, in increasing i; ids outside
 * [0, numSegments) dropped, as TensorFlow does. x [n, inner...] flattened to
 * [n, m]; out [numSegments, m], zero where no id points (the caller zeroes it).
 *
 * One invocation per (i, j): the first row i of each segment follows its
 * links (segmentLinksProgram) through the segment's rows in order and writes
 * the sum; every other invocation returns. O(n·m) reads of x and no atomics.
 * (It once had each invocation find its segment's rows by scanning all the
 * ids: O(n²·m), some 10¹¹ reads for a base model's 16,384 tokens.)
 */
export function segmentSumProgram(n: number, m: number, numSegments: number, dtype: "float32" | "int32") {
  const zero = dtype === "float32" ? "0.0" : "0";
  const body = `
  fn main(index : i32) {
    let n = uniforms.rows;
    let m = uniforms.cols;
    if (index >= n * m) { return; }
    let i = index / m;
    let j = index - i * m;
    let link = i32(links[i]);
    if (link < 0 || link % 2 == 0) { return; }
    var acc = ${zero};
    var k = i;
    // at most n rows: bounded, so that no chain can loop forever (an unbounded loop here also
    // came out wrong on SwiftShader without Dawn's bounds checks, exiting one row early)
    for (var rows = 0; rows < n; rows = rows + 1) {
      acc = acc + x[k * m + j];
      k = i32(links[k]) / 2;
      if (k >= n) { break; }
    }
    result[i32(segmentIds[i]) * m + j] = acc;
  }`;
  return flatProgram(n * m, [numSegments, m], ["x", "segmentIds", "links"], `retromaeSegmentSum_${dtype}`, "rows : i32, cols : i32, numSegments : i32,", body);
}

/**
 * UnsortedSegmentSum, deterministic (segmentSumProgram); and EMBEDDING_GRAD,
 * the same with the rows of one id (attrs `skip`) left out.
 */
const segmentSumKernel = (kernelName: string): KernelConfig => ({
  kernelName,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
    const { numSegments, skip } = attrs as unknown as { numSegments: number; skip?: number };
    const b = backend as unknown as WebGPUBackendLike;
    if (x.dtype !== "float32" && x.dtype !== "int32") throw new Error(`UnsortedSegmentSum on webgpu takes float32 or int32, got ${x.dtype}.`);
    const n = product(segmentIds.shape);
    const inner = x.shape.slice(segmentIds.shape.length);
    const m = product(inner);
    const out = zeros(b, [numSegments, m], x.dtype);
    if (n > 0 && m > 0 && numSegments > 0) {
      const ids = { ...segmentIds, shape: [n] };
      const links = b.runWebGPUProgram(segmentLinksProgram(n), [ids], "int32", ints(n, numSegments, skip ?? -1));
      const uniforms = [{ type: "int32", data: [n] }, { type: "int32", data: [m] }, { type: "int32", data: [numSegments] }];
      b.runWebGPUProgram(segmentSumProgram(n, m, numSegments, x.dtype), [x, ids, links], x.dtype, uniforms, out);
      b.disposeData(links.dataId);
    }
    // The same buffer as [numSegments, ...inner], as tfjs's Reshape relabels one.
    return { dataId: out.dataId, shape: [numSegments, ...inner], dtype: out.dtype };
  },
});

export const deterministicUnsortedSegmentSum = segmentSumKernel(tf.UnsortedSegmentSum);
export const embeddingGradWebGPU = segmentSumKernel(EMBEDDING_GRAD);
