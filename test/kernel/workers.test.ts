import { test } from "uvu";
import * as assert from "uvu/assert";
import { LanguageClient } from "../../kernel/workers";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MB = 1048576;

test("the language thread answers each call with its own reply, and collects its garbage once idle", async () => {
  const client = new LanguageClient(process.cwd());
  try {
    // calls answered in order, each with its result
    const [a, b] = await Promise.all([client.call("check", { code: "const one = 1;\none" }), client.call("isComplete", { code: "if (one) {" })]);
    assert.ok(a.ok, "the cell checks");
    assert.is(b.status, "incomplete");
    // each check leaves a program's and a checker's garbage behind
    for (let i = 0; i < 150; i++) await client.call("check", { code: `const c${i} = ${i} * 2;\nc${i}` });
    await sleep(800); // idle: the thread collects 200 ms after its last call
    const idle = await client.call("heap", { collect: false });
    const collected = await client.call("heap", { collect: true });
    assert.ok(idle.used - collected.used < 3 * MB, `heap after the pause ${(idle.used / MB).toFixed(1)} MB, after a full collection ${(collected.used / MB).toFixed(1)} MB`);
  } finally {
    client.terminate();
  }
});

test.run();
