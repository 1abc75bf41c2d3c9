import { test } from "uvu";
import * as assert from "uvu/assert";
import { currentSignal, setAmbientSignal } from "../lib/interrupt";

test("an explicit signal wins, else the host's ambient one, else none", () => {
  assert.is(currentSignal(), undefined);
  const host = new AbortController();
  const previous = setAmbientSignal(() => host.signal);
  const mine = new AbortController().signal;
  assert.is(currentSignal(mine), mine);
  assert.is(currentSignal(), host.signal);
  host.abort();
  assert.ok(currentSignal()!.aborted);
  setAmbientSignal(previous);
  assert.is(currentSignal(), undefined);
});

test.run();
