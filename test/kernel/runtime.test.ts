import { test } from "uvu";
import * as assert from "uvu/assert";
import { CommManager } from "../../kernel/runtime/comms";
import { terminalDisplay } from "../../lib";
import { collectGarbage } from "../../lib/util";
import type { Library } from "../../kernel/runtime/bridge";
import type { DisplayPublisher } from "../../kernel/runtime/display";
import { Runtime, type RuntimeHooks } from "../../kernel/runtime/runtime";
import type { Message } from "../../kernel/protocol/wire";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rssMb = () => process.memoryUsage().rss / 1048576;

const hooks = {
  publish: () => undefined,
  display: { forLibrary: () => terminalDisplay } as unknown as DisplayPublisher,
  comms: new CommManager(() => undefined, () => undefined),
  requestInput: () => undefined,
  exit: () => undefined,
} as unknown as RuntimeHooks;
const request = { header: { msg_id: "m", msg_type: "execute_request" }, content: {} } as unknown as Message;

/** 200 MB of typed arrays, allocated and dropped: the freed memory the native backend keeps mapped (keepFreedMemory). */
async function freeLotsOfMemory(): Promise<number> {
  let keep: Float32Array[] | null = [];
  for (let i = 0; i < 200; i++) keep.push(new Float32Array(262144).fill(i));
  keep = null;
  collectGarbage();
  await sleep(300); // array buffers' memory is freed by a background task after the collection
  return rssMb();
}

test("an idle kernel gives the freed memory back 250 ms after a cell, unless the next cell begins first", async () => {
  const runtime = new Runtime(hooks, process.cwd());
  const lib = runtime.modules.requireModule("retromae") as Library;
  await lib.backend.use("native");

  // A cell ends and the next begins at once: nothing is released in between.
  let held = await freeLotsOfMemory();
  runtime.begin(request);
  runtime.end();
  runtime.begin(request);
  await sleep(500);
  assert.ok(held - rssMb() < 50, `RSS ${held.toFixed(0)} → ${rssMb().toFixed(0)} MB while a cell runs`);
  runtime.end();
  await sleep(500); // (that cell's own release)

  // The kernel then stays idle: the release comes.
  held = await freeLotsOfMemory();
  runtime.begin(request);
  runtime.end();
  await sleep(500);
  assert.ok(held - rssMb() > 100, `RSS ${held.toFixed(0)} → ${rssMb().toFixed(0)} MB after 500 ms idle (200 MB freed)`);
});

test("after a longer pause the idle kernel empties the native backend's buffer pool, and that memory goes back too", async () => {
  const runtime = new Runtime(hooks, process.cwd(), { releaseMs: 50, emptyCacheMs: 300 });
  const lib = runtime.modules.requireModule("retromae") as Library;
  await lib.backend.use("native");
  const tf = lib.tf;
  const be = tf.backend() as unknown as { poolBytes(): number };
  // 200 native matmul outputs of 1 MB, alive together, then disposed: 200 MB of free buffers in the pool
  const a = tf.randomNormal([512, 512]);
  const outs = Array.from({ length: 200 }, () => tf.matMul(a, a));
  tf.dispose(outs);
  assert.ok(be.poolBytes() >= 200 * 1048576, `pool ${be.poolBytes()} bytes`);
  const held = rssMb();
  runtime.begin(request);
  runtime.end();
  await sleep(150); // the C-heap release has come; the pool is untouched
  assert.ok(be.poolBytes() >= 200 * 1048576, "the pool is kept through a short pause");
  await sleep(1000);
  assert.is(be.poolBytes(), 0, "emptied after the longer pause");
  assert.ok(held - rssMb() > 150, `RSS ${held.toFixed(0)} → ${rssMb().toFixed(0)} MB (a 200 MB pool)`);
  a.dispose();
});

test.run();
