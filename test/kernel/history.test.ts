import { test } from "uvu";
import * as assert from "uvu/assert";
import { globToRegExp, History, SESSION } from "../../kernel/history";

function filled(): History {
  const h = new History();
  ["const a = 1", "a + 1", "6 * 7", "a + 1", "6 * 7"].forEach((code, i) => h.add(i + 1, code));
  h.setOutput(3, "42");
  return h;
}

test("tail gives the last n, with outputs when asked", () => {
  const h = filled();
  assert.equal(h.query({ hist_access_type: "tail", n: 2 }), [
    [SESSION, 4, "a + 1"],
    [SESSION, 5, "6 * 7"],
  ]);
  assert.equal(h.query({ hist_access_type: "tail", n: 3, output: true })[0], [SESSION, 3, ["6 * 7", "42"]]);
});

test("range is start inclusive, stop exclusive, in this session (0 or its number)", () => {
  const h = filled();
  assert.equal(h.query({ hist_access_type: "range", session: SESSION, start: 2, stop: 4 }).map((e) => (e as unknown[])[1]), [2, 3]);
  assert.equal(h.query({ hist_access_type: "range", session: 0, start: 5 }).length, 1);
  assert.equal(h.query({ hist_access_type: "range", session: 99, start: 1 }), []);
});

test("search: glob, unique keeps the latest, n keeps the last n", () => {
  const h = filled();
  assert.is(h.query({ hist_access_type: "search", pattern: "a*" }).length, 2);
  assert.equal(h.query({ hist_access_type: "search", pattern: "6 * 7", unique: true }), [[SESSION, 5, "6 * 7"]]);
  assert.is(h.query({ hist_access_type: "search", pattern: "*", n: 2 }).length, 2);
  assert.ok(globToRegExp("a?1").test("a+1"));
  assert.not.ok(globToRegExp("a").test("ab"));
});

test("unknown access types give an empty list", () => {
  assert.equal(filled().query({ hist_access_type: "sideways" }), []);
});

test.run();
