import { test } from "uvu";
import * as assert from "uvu/assert";
import { JUPYTER_DISPLAY, sideBySide, toBundle } from "../lib/display";

test("sideBySide: titled items in one flex row as HTML, one after another as text, rendered when displayed", () => {
  let calls = 0;
  const table = { toMimeBundle: () => (calls++, { "text/html": "<table><tr><td>0.1</td></tr></table>", "text/plain": "run  0.1" }) };
  const both = sideBySide([{ title: "zero-shot", value: table }, { title: "fine-tuned <10 epochs>", value: { "text/plain": "a & b" } }]);
  assert.is(calls, 0, "nothing is rendered until it is displayed");
  const b = toBundle(both);
  assert.is(b["text/html"], '<div style="display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start"><div><div style="font-weight:bold;margin-bottom:4px">zero-shot</div><table><tr><td>0.1</td></tr></table></div><div><div style="font-weight:bold;margin-bottom:4px">fine-tuned &lt;10 epochs&gt;</div><pre>a &amp; b</pre></div></div>');
  assert.is(b["text/plain"], "zero-shot\nrun  0.1\n\nfine-tuned <10 epochs>\na & b");
  assert.equal((both as unknown as { [JUPYTER_DISPLAY]: () => unknown })[JUPYTER_DISPLAY](), b, "the kernel's hook gives the same bundle");
});

test.run();
