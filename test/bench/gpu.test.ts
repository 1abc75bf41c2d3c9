/**
 * bench gpu's parent reading a child's rows (bench/gpu.ts lastChildRow): the
 * child prints its row after each part, so a child stopped by
 * --child-timeout-s still gives what it measured.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { lastChildRow } from "../../bench/gpu";

test("the last whole row is what the child measured; a stopped child's row is kept and marked incomplete; a cut-off line is passed over", () => {
  const first = JSON.stringify({ preset: "base", ms_per_step: 1500, incomplete: "stopped before profile" });
  const second = JSON.stringify({ preset: "base", ms_per_step: 1500, profile: { gpu_ms: 900 }, incomplete: "stopped before encoding" });
  const last = JSON.stringify({ preset: "base", ms_per_step: 1500, profile: { gpu_ms: 900 }, docs_per_s: 80 });
  assert.equal(lastChildRow(["starting", first, second, last, ""].join("\n")), { row: JSON.parse(last), complete: true });
  assert.equal(lastChildRow([first, second].join("\n")), { row: JSON.parse(second), complete: false }, "stopped after the profile");
  assert.equal(lastChildRow([first, second.slice(0, 40)].join("\n")), { row: JSON.parse(first), complete: false }, "killed while writing its second row");
  assert.equal(lastChildRow("warming up\n"), { row: null, complete: false }, "stopped before any row");
});

test.run();
