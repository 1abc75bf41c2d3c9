/**
 * Micro models for the webgpu tests, and the software Vulkan drivers they
 * run on. SwiftShader (a CPU emulating a GPU) takes about 96 s for one tiny
 * step at 8×64, so these tests use one layer, hidden 32 and a vocabulary of
 * a few hundred WordPieces.
 */
import * as fs from "fs";
import * as path from "path";
import { execFileSync } from "child_process";
import { Vocab } from "../lib/text/vocab";
import { BertTokenizer } from "../lib/text/tokenizer";
import { RetroMAE } from "../lib/model/retromae";
import type { BertConfig } from "../lib/model/config";
import { Rng } from "../lib/engine/rng";

/** The software Vulkan drivers the webgpu tests run on, and how each names its adapter. */
export const SOFTWARE_VULKAN = {
  /** Chromium's SwiftShader (Debian's chromium-common ships its ICD): the default. */
  swiftshader: { adapter: "SwiftShader", library: /libvk_swiftshader\.so$/ },
  /** Mesa 25's lavapipe, fetched by scripts/lavapipe.sh into .cache/lavapipe (Debian 12's own, Mesa 22.3, does not run Dawn). */
  lavapipe: { adapter: "llvmpipe", library: /libvulkan_lvp\.so$/ },
} as const;
export type SoftwareVulkan = keyof typeof SOFTWARE_VULKAN;

/** Which software driver this test process runs on: RETROMAE_TEST_VULKAN (scripts/test.js sets it for its second-driver runs), else SwiftShader. */
export function testVulkan(): SoftwareVulkan {
  const v = process.env.RETROMAE_TEST_VULKAN || "swiftshader";
  if (v !== "swiftshader" && v !== "lavapipe") throw new Error(`RETROMAE_TEST_VULKAN is "${v}"; set it to swiftshader or lavapipe, or unset it.`);
  return v;
}

function findIcd(driver: SoftwareVulkan): string {
  if (driver === "lavapipe") return path.join(__dirname, "..", ".cache", "lavapipe", "lvp_icd.json");
  try {
    return execFileSync("dpkg", ["-L", "chromium-common"], { encoding: "utf8" }).split("\n").find((l) => l.endsWith("vk_swiftshader_icd.json")) ?? "";
  } catch {
    return "";
  }
}

/**
 * Point the Vulkan loader at a software driver's ICD, for this process
 * only: SwiftShader, or lavapipe where RETROMAE_TEST_VULKAN=lavapipe.
 * RETROMAE_TEST_VK_ICD overrides the path. Returns the ICD file.
 */
export function useSoftwareVulkan(): string {
  const icd = softwareVulkanIcd();
  process.env.VK_ICD_FILENAMES = icd;
  return icd;
}

/** The ICD file useSoftwareVulkan points the loader at (throws the fix where it is missing), leaving the environment as it is. */
export function softwareVulkanIcd(): string {
  const driver = testVulkan();
  const icd = process.env.RETROMAE_TEST_VK_ICD || findIcd(driver);
  if (!icd || !fs.existsSync(icd)) {
    throw new Error(
      driver === "lavapipe"
        ? "lavapipe's Vulkan ICD was not found: run sh scripts/lavapipe.sh (it fetches Mesa 25's lavapipe into .cache/lavapipe), or set RETROMAE_TEST_VK_ICD."
        : "SwiftShader's Vulkan ICD was not found: apt-get install chromium (it ships vk_swiftshader_icd.json), or set RETROMAE_TEST_VK_ICD.",
    );
  }
  return icd;
}

/**
 * Whether this run takes the tests whose point is a size (past 65,535
 * workgroups, 2^24 logits, logits past a 128 MiB binding): lavapipe's run
 * (scripts/test.js runs test/engine/webgpu.test.ts on both drivers). Their
 * shaders are the ones other tests check on small shapes, on both; only the
 * size is new, and SwiftShader takes about 12 times lavapipe's time on it
 * (a step with 128 MiB of logits: 65 s against 5.5 s), where issue 30 §5
 * wants the SwiftShader run within about 10 minutes.
 */
export function atScaleRun(): boolean {
  return testVulkan() === "lavapipe";
}

/** The adapter name that the driver of this process reports (SwiftShader or llvmpipe), for tests that match it. */
export function softwareAdapterName(): string {
  return SOFTWARE_VULKAN[testVulkan()].adapter;
}

/** Specials, single characters and their ## continuations, then the most frequent words of `texts`. */
export function microTokenizer(texts: string[], words = 200): BertTokenizer {
  const chars = "abcdefghijklmnopqrstuvwxyz0123456789".split("");
  const punct = ".,;:()[]-/%+=<>'\"?!".split("");
  const counts = new Map<string, number>();
  for (const t of texts) for (const w of t.toLowerCase().match(/[a-z]{3,}/g) ?? []) counts.set(w, (counts.get(w) ?? 0) + 1);
  const top = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, words).map(([w]) => w);
  return new BertTokenizer(new Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ...chars, ...punct, ...chars.map((c) => `##${c}`), ...top]));
}

/**
 * One layer, hidden 32, 2 heads. `initializerRange` 0.02 is BERT's; a probe
 * test takes a wider one, so that random documents' [CLS] vectors differ by
 * more than float rounding and a ranking is not decided by near-ties.
 */
export function microModel(vocabSize: number, seed = 5, initializerRange = 0.02, overrides: Partial<BertConfig> = {}): RetroMAE {
  return RetroMAE.create("tiny", { rng: new Rng(seed), overrides: { vocabSize, hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1, maxPositionEmbeddings: 64, initializerRange, ...overrides } });
}

/**
 * Give every storage buffer the device makes from now on (every device of
 * this process: Dawn's GPUDevice prototype is patched) a tail of `tailBytes`
 * of NaN past the size asked for; tfjs still sees that size. With Dawn's
 * bounds checks off (the default), a shader that reads past the end of a
 * tensor then reads NaN, which reaches its output even where the value is
 * multiplied by zero: tests against the cpu fail instead of passing by luck
 * (as they do on tfjs-webgpu's unchecked mm_readB, without dense.ts
 * boundReadsOfB).
 */
export function guardBuffersWithNaN(device: GPUDevice, tailBytes = 4096): void {
  const proto = Object.getPrototypeOf(device) as GPUDevice & { retromaeGuarded?: boolean };
  if (proto.retromaeGuarded) return;
  const create = proto.createBuffer;
  // the buffer's own methods as they are now: a recorded step (replay.ts) patches them while it records, and the tail is not the step's
  const { getMappedRange, unmap } = GPUBuffer.prototype;
  proto.createBuffer = function (this: GPUDevice, desc: GPUBufferDescriptor) {
    const mapped = desc.usage & (GPUBufferUsage.MAP_READ | GPUBufferUsage.MAP_WRITE);
    if (!(desc.usage & GPUBufferUsage.STORAGE) || desc.mappedAtCreation || mapped) return create.call(this, desc);
    const buffer = create.call(this, { ...desc, size: desc.size + tailBytes, mappedAtCreation: true });
    new Float32Array(getMappedRange.call(buffer)).fill(NaN, Math.ceil(desc.size / 4)); // (a mapped range's offset must be a multiple of 8)
    unmap.call(buffer);
    Object.defineProperty(buffer, "size", { value: desc.size });
    return buffer;
  };
  proto.retromaeGuarded = true;
}
