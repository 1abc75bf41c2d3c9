/**
 * How Node waits for the GPU (lib/engine/webgpu/poll.ts): on a software
 * adapter a 1 ms timer between dawn.node's ticks instead of its busy loop,
 * which took a core from the CPU that runs the shaders; Dawn's loop on a
 * hardware adapter and on the Null backend. On SwiftShader, and on Dawn's
 * Null backend.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as util from "util";
import * as tf from "../../lib/engine/tf";
import { backend, use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { NULL_ADAPTER } from "../../lib/engine/webgpu/dawn";
import { webgpuState } from "../../lib/engine/webgpu/backend";
import { dawnPolling, pollChoice, pollFor, setDawnPolling, withDawnPolling } from "../../lib/engine/webgpu/poll";
import { withEnv } from "../../bench/common";
import { useSoftwareVulkan } from "../webgpu-helpers";

useSoftwareVulkan();
const bits = (a: ArrayLike<number>) => Array.from(new Uint32Array(Float32Array.from(a).buffer));

test("RETROMAE_WEBGPU_POLL: auto picks a timer on a software adapter that computes, Dawn's loop on hardware and on the Null backend; spin and timer override; anything else is one sentence", () => {
  assert.is(pollChoice({}), "auto");
  assert.is(pollChoice({ RETROMAE_WEBGPU_POLL: "" }), "auto");
  assert.is(pollChoice({ RETROMAE_WEBGPU_POLL: "timer" }), "timer");
  assert.is(pollChoice({ RETROMAE_WEBGPU_POLL: "spin" }), "spin");
  assert.throws(() => pollChoice({ RETROMAE_WEBGPU_POLL: "fast" }), (e: Error) => e.message === 'RETROMAE_WEBGPU_POLL is "fast"; set it to spin (Dawn\'s own loop), timer (a 1 ms timer between Dawn\'s ticks) or auto (timer on a software adapter, the default), or unset it');
  assert.is(pollFor({ software: true, backend: "vulkan" }, "auto"), "timer");
  assert.is(pollFor({ software: false, backend: "vulkan" }, "auto"), "spin");
  assert.is(pollFor({ software: true, backend: "null" }, "auto"), "spin");
  assert.is(pollFor({ software: false, backend: "metal" }, "timer"), "timer");
  assert.is(pollFor({ software: true, backend: "vulkan" }, "spin"), "spin");
});

test("in timer mode only Dawn's tick (native, no name, no parameters) waits for a timer: a promise's resolver, a bound function and JavaScript callbacks run at the next check phase as before, and util.promisify(setImmediate) still works", async () => {
  const before = setDawnPolling("timer");
  try {
    const ticks = () => dawnPolling().timerTicks;
    const t0 = ticks();
    // Function.prototype is a native function of no name and no parameters, as dawn.node's tick is
    setImmediate(Function.prototype as () => void);
    assert.is(ticks(), t0 + 1, "a tick like Dawn's goes on a timer");
    await new Promise((r) => setImmediate(r)); // a promise's resolver: native, but it takes one parameter
    await new Promise((r) => setImmediate((() => r(0)).bind(null))); // bound: "bound " names it
    await new Promise<void>((r) => setImmediate(() => r()));
    assert.is(await util.promisify(setImmediate)("value"), "value");
    assert.is(ticks(), t0 + 1, "nothing else went on a timer");
    setDawnPolling("spin");
    const t1 = ticks();
    setImmediate(Function.prototype as () => void);
    assert.is(ticks(), t1, "in spin mode Dawn's ticks are setImmediate's, as dawn.node queues them");
  } finally {
    setDawnPolling(before);
  }
});

test("on SwiftShader the waits for the GPU go on the timer, and give the values Dawn's busy loop gives; backend.describe() and info() say which; RETROMAE_WEBGPU_POLL=spin keeps the loop", async () => {
  await use("webgpu");
  assert.is(webgpuState()!.poll, "timer");
  assert.is(backend.info().webgpu!.poll, "timer");
  assert.match(backend.describe(), /\n {2}waiting for the GPU: a 1 ms timer between Dawn's ticks \(a software adapter computes on this CPU\)$/);
  const a = new Rng(3).fillNormal(new Float32Array(192 * 160));
  const product = async () => {
    const [x, y] = [tf.tensor2d(a, [192, 160]), tf.tensor2d(a, [160, 192])];
    const p = tf.matMul(x, y);
    const out = bits((await p.data()) as Float32Array);
    tf.dispose([x, y, p]);
    return out;
  };
  const t0 = dawnPolling().timerTicks;
  const timed = await product();
  assert.ok(dawnPolling().timerTicks > t0, "the read waited on the timer");
  const spun = await withEnv("RETROMAE_WEBGPU_POLL", "spin", async () => {
    await use("webgpu"); // the same device, the mode from the environment
    assert.is(webgpuState()!.poll, "spin");
    assert.match(backend.describe(), /\n {2}waiting for the GPU: Dawn's busy loop \(RETROMAE_WEBGPU_POLL=spin\)$/);
    const t1 = dawnPolling().timerTicks;
    const out = await product();
    assert.is(dawnPolling().timerTicks, t1, "no tick on the timer");
    return out;
  });
  assert.equal(timed, spun);
  // withDawnPolling (bench gpu's timer-poll steps) puts the mode back
  await use("webgpu");
  assert.is(await withDawnPolling("spin", async () => dawnPolling().mode), "spin");
  assert.is(dawnPolling().mode, "timer");
});

test("a bad RETROMAE_WEBGPU_POLL stops use('webgpu') with its sentence; on Dawn's Null backend (nothing computed, reads answered at once) Node keeps Dawn's loop, so bench host times the host", async () => {
  await withEnv("RETROMAE_WEBGPU_POLL", "sometimes", async () => {
    try {
      await use("webgpu");
      assert.unreachable("use('webgpu') started");
    } catch (err) {
      assert.match((err as Error).message, /^Backend "webgpu" failed to load: RETROMAE_WEBGPU_POLL is "sometimes"; set it to spin \(Dawn's own loop\), timer/);
    }
  });
  await withEnv("RETROMAE_WEBGPU_ADAPTER", NULL_ADAPTER, async () => {
    await use("webgpu");
    assert.is(webgpuState()!.summary.backend, "null");
    assert.is(webgpuState()!.poll, "spin");
    assert.match(backend.describe(), /\n {2}waiting for the GPU: Dawn's busy loop$/);
  });
});

test.run();
