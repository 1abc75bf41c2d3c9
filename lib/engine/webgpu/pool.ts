/// <reference types="@webgpu/types" />
/**
 * A bound on tfjs-webgpu's buffer pool.
 *
 * tfjs-backend-webgpu 4.22 keeps every GPUBuffer a disposed tensor leaves in
 * a pool keyed by its exact byte size and usage, and never gives one back to
 * the device. Shapes that change from batch to batch therefore leave a new
 * set of buffers behind each time:
 * - in training, the logits and their gradients at the masked positions
 *   ([n, vocab]: n changes with every batch's masking);
 * - in encoding, every batch of a new padded length (the probe sorts texts by
 *   length, so nearly every batch has its own).
 * Over a run the pool grows until the GPU is out of memory, although the
 * tensors alive at any moment fit (`numBytesInGPU` flat, `numBytesAllocatedInGPU`
 * climbing).
 *
 * `PoolTrimmer` wraps the pool's `acquireBuffer` to count, for each size and
 * usage, the most buffers in use at once, and `trim()` ends a round (a
 * training step, an encoded batch): it destroys the free buffers beyond what
 * this round or the one before it held at once. Buffers every step uses stay
 * pooled (no allocation in the steady state); those of a shape that did not
 * recur within two rounds go back to the device. This is what PyTorch's
 * caching allocator does with `torch.cuda.empty_cache()`, done each round
 * for the shapes that stopped being used.
 *
 * Destroying a free buffer is safe: tfjs releases a tensor's buffer to the
 * pool only after the command buffer that used it was submitted, and Dawn
 * frees a destroyed buffer's memory once the GPU has finished that work.
 */

/** The fields of tfjs-webgpu's BufferManager (4.22) that this project reads and keeps consistent. */
export interface BufferManagerLike {
  freeBuffers: Map<string, GPUBuffer[]>;
  usedBuffers: Map<string, GPUBuffer[]>;
  numFreeBuffers: number;
  numBytesAllocated: number;
  acquireBuffer(size: number, usage: number, mappedAtCreation?: boolean, reuse?: boolean): GPUBuffer;
  releaseBuffer(buffer: GPUBuffer, reuse?: boolean): void;
}

export function isBufferManager(x: unknown): x is BufferManagerLike {
  const m = x as BufferManagerLike | null;
  return !!m && m.freeBuffers instanceof Map && m.usedBuffers instanceof Map && typeof m.acquireBuffer === "function" && typeof m.releaseBuffer === "function" && typeof m.numBytesAllocated === "number";
}

/** tfjs-webgpu's key for a pool entry. */
const keyOf = (size: number, usage: number) => `${size}_${usage}`;

/**
 * Take a free buffer out of tfjs's pool, keeping its accounting: the caller
 * owns it now (destroys it, or keeps it: a recorded step). False when the
 * buffer is not free in the pool.
 */
export function takeFromPool(pool: BufferManagerLike, buffer: GPUBuffer): boolean {
  const free = pool.freeBuffers.get(keyOf(buffer.size, buffer.usage));
  const i = free ? free.lastIndexOf(buffer) : -1;
  if (i < 0) return false;
  free!.splice(i, 1);
  pool.numFreeBuffers--;
  pool.numBytesAllocated -= buffer.size;
  return true;
}

export class PoolTrimmer {
  /** Per key, the most buffers in use at once in this round. */
  private peak = new Map<string, number>();
  /** The same for the round before. */
  private before = new Map<string, number>();

  private constructor(private readonly pool: BufferManagerLike) {
    const acquire = pool.acquireBuffer.bind(pool);
    pool.acquireBuffer = (size, usage, mappedAtCreation, reuse) => {
      const buffer = acquire(size, usage, mappedAtCreation, reuse);
      const key = keyOf(size, usage);
      const inUse = pool.usedBuffers.get(key)?.length ?? 0;
      if (inUse > (this.peak.get(key) ?? 0)) this.peak.set(key, inUse);
      return buffer;
    };
  }

  /**
   * Wrap the pool of a tfjs-webgpu backend. Null where the backend has no
   * pool of the shape this knows (another tfjs-webgpu version): nothing is
   * trimmed then, as before.
   */
  static attach(backend: unknown): PoolTrimmer | null {
    const pool = (backend as { bufferManager?: unknown } | null)?.bufferManager;
    return isBufferManager(pool) ? new PoolTrimmer(pool) : null;
  }

  /**
   * End a round: destroy the free buffers neither this round nor the one
   * before needed. With `all`, destroy every free buffer: for a caller that
   * knows the next round has shapes of its own (an encoder's next batch of
   * another padded length), so that round's buffers are not allocated while
   * this one's are still held. Returns the bytes released.
   */
  trim(all = false): number {
    const pool = this.pool;
    let bytes = 0;
    for (const [key, free] of pool.freeBuffers) {
      const inUse = pool.usedBuffers.get(key)?.length ?? 0;
      const keep = all ? 0 : Math.max(0, Math.max(this.peak.get(key) ?? 0, this.before.get(key) ?? 0) - inUse);
      while (free.length > keep) {
        const buffer = free[free.length - 1];
        takeFromPool(pool, buffer);
        bytes += buffer.size;
        buffer.destroy();
      }
      // A size with no buffer left is forgotten (tfjs adds the key again when it asks for one), so the maps
      // do not grow with every size ever seen. One key always stays: tfjs's releaseBuffer does nothing
      // while its free map is empty.
      if (free.length === 0 && inUse === 0 && pool.freeBuffers.size > 1) {
        pool.freeBuffers.delete(key);
        pool.usedBuffers.delete(key);
      }
    }
    // The round now starting counts from the buffers still in use.
    this.before = this.peak;
    this.peak = new Map();
    for (const [key, used] of pool.usedBuffers) if (used.length) this.peak.set(key, used.length);
    return bytes;
  }
}
