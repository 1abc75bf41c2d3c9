import { test } from "uvu";
import * as assert from "uvu/assert";
import { CellReporter } from "../../runner/cell-reporter";
import type { Message } from "../../kernel/protocol/wire";

const MIME = "application/vnd.retromae.progress+json";
const msg = (type: string, step: number, total: number, status = "running", id = "bar"): Message =>
  ({ header: { msg_type: type }, content: { data: { "text/plain": "x", [MIME]: { step, totalSteps: total, status, text: `step ${step}/${total}` } }, transient: { display_id: id } } }) as unknown as Message;

function reporter(tty: boolean) {
  let t = 0;
  const out: string[] = [];
  const r = new CellReporter({ tty, write: (s) => out.push(s), now: () => t });
  return { r, out, at: (ms: number) => (t = ms) };
}

test("on a TTY: overwritten in place at most every 2 s, the final state always shown, then a newline", () => {
  const { r, out, at } = reporter(true);
  r.begin(false);
  r.message(msg("display_data", 0, 100));
  at(500);
  r.message(msg("update_display_data", 10, 100)); // too soon
  at(2100);
  r.message(msg("update_display_data", 40, 100));
  at(2200);
  r.message(msg("update_display_data", 100, 100, "done"));
  r.end();
  assert.equal(out, ["\r\x1b[2Kstep 0/100", "\r\x1b[2Kstep 40/100", "\r\x1b[2Kstep 100/100", "\n"]);
});

test("in a log: one line per 10% crossed and one final line, per display", () => {
  const { r, out } = reporter(false);
  r.begin(false);
  for (let i = 0; i <= 50; i++) r.message(msg(i ? "update_display_data" : "display_data", i, 50));
  r.message(msg("display_data", 3, 3, "done", "other"));
  r.message(msg("update_display_data", 3, 3, "done", "other")); // its final line is out already
  assert.equal(out, [...[0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50].map((i) => `step ${i}/50\n`), "step 3/3\n"]);
  // a display without the progress MIME, and other messages, print nothing
  r.message({ header: { msg_type: "display_data" }, content: { data: { "text/plain": "hi" } } } as unknown as Message);
  r.message({ header: { msg_type: "stream" }, content: { text: "x" } } as unknown as Message);
  assert.is(out.length, 12);
});

test("a silent cell gets a 'still running (N s)' line after 30 s, and again after each 30 s of silence", () => {
  const { r, out, at } = reporter(false);
  r.begin(false);
  at(29_000);
  r.tick();
  assert.equal(out, []);
  at(30_500);
  r.tick();
  at(45_000);
  r.sawOutput(); // the cell printed something
  at(70_000);
  r.tick();
  at(75_500);
  r.tick();
  assert.equal(out, ["still running (31 s)\n", "still running (76 s)\n"]);
  r.end();
});

test("between 10% lines, 30 s of silence prints the latest progress rather than 'still running'", () => {
  const { r, out, at } = reporter(false);
  r.begin(false);
  r.message(msg("display_data", 0, 100));
  at(20_000);
  r.message(msg("update_display_data", 3, 100));
  at(31_000);
  r.tick();
  at(95_000);
  r.tick(); // no progress for 64 s: still running
  assert.equal(out, ["step 0/100\n", "step 3/100\n", "still running (95 s)\n"]);
  r.end();
});

test.run();
