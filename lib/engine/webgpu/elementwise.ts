/**
 * Elementwise kernels, one pass each:
 * - GELU (exact, erf form) and its gradient, where tfjs composes five ops
 *   forward and a dozen backward (lib/engine/fused.ts);
 * - dropout with its mask from a counter-based hash drawn per element
 *   (fused.ts's DROPOUT), where tfjs draws dropout's noise on the CPU and
 *   uploads it (the hash in WGSL is ./program.ts's, shared with the kernels
 *   that drop out as they read or write);
 * - the additive mask of a 0/1 byte matrix (the decoder's attention mask),
 *   from its bytes four to a word: the upload is a quarter of int32s'.
 */
import { ADDITIVE_MASK_OF_BYTES, DROPOUT, GELU, GELU_GRAD } from "../fused";
import type { KernelConfig, TensorInfo } from "@tensorflow/tfjs-core";
import { flatProgram, GELU_FUNCTIONS_WGSL, HASH_WGSL, product, WebGPUBackendLike } from "./program";

/** An elementwise program over `inputs` (with program.ts's retromaeGelu and retromaeGeluGrad in scope). */
function elementwise(name: string, inputs: string[], expr: string) {
  return (n: number) => {
    const body = `${GELU_FUNCTIONS_WGSL}
  fn main(index : i32) {
    if (index >= uniforms.count) { return; }
    let i = index;
    result[i] = ${expr};
  }`;
    return flatProgram(n, [n], inputs, `retromae${name}`, "count : i32,", body);
  };
}

/** x · Φ(x) = 0.5 · x · (1 + erf(x / √2)) */
const geluProgram = elementwise("Gelu", ["x"], "retromaeGelu(x[i])");
/** dy · (Φ(x) + x · φ(x)) */
const geluGradProgram = elementwise("GeluGrad", ["x", "dy"], "retromaeGeluGrad(x[i], dy[i])");

function elementwiseKernel(kernelName: string, program: (n: number) => object, names: string[]): KernelConfig {
  return {
    kernelName,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend }) => {
      const ts = names.map((k) => (inputs as Record<string, TensorInfo>)[k]);
      const n = product(ts[0].shape);
      if (ts.some((t) => t.dtype !== "float32" || product(t.shape) !== n)) throw new Error(`${kernelName} on webgpu takes float32 inputs of one shape.`);
      const out = (backend as unknown as WebGPUBackendLike).runWebGPUProgram(program(n), ts.map((t) => ({ ...t, shape: [n] })), "float32", [{ type: "int32", data: [n] }]);
      return { dataId: out.dataId, shape: ts[0].shape, dtype: "float32" };
    },
  };
}

export const geluWebGPU = elementwiseKernel(GELU, geluProgram, ["x"]);
export const geluGradWebGPU = elementwiseKernel(GELU_GRAD, geluGradProgram, ["x", "dy"]);

/**
 * DROPOUT (lib/engine/fused.ts): the mask from the same 32-bit hash as the
 * JavaScript kernel, drawn here per element, so no noise is drawn on the CPU
 * or uploaded; bit for bit the JavaScript kernel's output.
 */
function dropoutProgram(n: number, based: boolean) {
  // with a base seed (an int32 [1] input), the mask's seed is hash(base ^ hash(call)) (DropoutSeeds)
  const seed = based ? "retromaeHash(u32(base[0]) ^ uniforms.seed)" : "uniforms.seed";
  const body = `${HASH_WGSL}
  fn main(index : i32) {
    if (index >= uniforms.count) { return; }
    let keep = retromaeHash(${seed} ^ u32(index)) >= uniforms.threshold;
    result[index] = select(0.0, x[index] * uniforms.scale, keep);
  }`;
  return flatProgram(n, [n], based ? ["x", "base"] : ["x"], `retromaeDropout_${based ? "based" : "plain"}`, "count : i32, seed : u32, threshold : u32, scale : f32,", body);
}

export const dropoutWebGPU: KernelConfig = {
  kernelName: DROPOUT,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, base } = inputs as { x: TensorInfo; base?: TensorInfo };
    const { seed, threshold, scale } = attrs as unknown as { seed: number; threshold: number; scale: number };
    if (x.dtype !== "float32") throw new Error("Dropout on webgpu takes float32.");
    if (base && (base.dtype !== "int32" || product(base.shape) !== 1)) throw new Error("Dropout's base seed must be an int32 tensor of one value.");
    const n = product(x.shape);
    const out = (backend as unknown as WebGPUBackendLike).runWebGPUProgram(dropoutProgram(n, !!base), [{ ...x, shape: [n] }, ...(base ? [{ ...base, shape: [1] }] : [])], "float32", [
      { type: "int32", data: [n] },
      { type: "uint32", data: [seed] },
      { type: "uint32", data: [threshold] },
      { type: "float32", data: [scale] },
    ]);
    return { dataId: out.dataId, shape: x.shape, dtype: "float32" };
  },
};

/** 0 where byte i of `words` (little endian, four to a word) is set, `value` where it is 0. words [⌈n/4⌉] int32 -> [n] */
function additiveMaskOfBytesProgram(n: number) {
  const body = `
  fn main(index : i32) {
    if (index >= uniforms.count) { return; }
    let byte = (u32(words[index / 4]) >> (8u * u32(index % 4))) & 0xffu;
    result[index] = select(uniforms.value, 0.0, byte != 0u);
  }`;
  return flatProgram(n, [n], ["words"], "retromaeAdditiveMaskOfBytes", "count : i32, value : f32,", body);
}

export const additiveMaskOfBytesWebGPU: KernelConfig = {
  kernelName: ADDITIVE_MASK_OF_BYTES,
  backendName: "webgpu",
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { words } = inputs as { words: TensorInfo };
    const { shape, value } = attrs as unknown as { shape: number[]; value: number };
    const b = backend as unknown as WebGPUBackendLike;
    const n = product(shape);
    if (words.dtype !== "int32" || 4 * product(words.shape) < n) throw new Error(`${ADDITIVE_MASK_OF_BYTES} on webgpu takes int32 words holding at least ${n} bytes.`);
    if (n === 0) return b.makeTensorInfo([...shape], "float32", new Float32Array(0));
    const out = b.runWebGPUProgram(additiveMaskOfBytesProgram(n), [words], "float32", [
      { type: "int32", data: [n] },
      { type: "float32", data: [value] },
    ]);
    return { dataId: out.dataId, shape: [...shape], dtype: "float32" };
  },
};
