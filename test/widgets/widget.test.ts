import { test } from "uvu";
import * as assert from "uvu/assert";
import { setWidgetHost, WidgetHost, HostedModel } from "../../lib/widgets/host";
import { deserializeState, link, liveWidgets, serializeState, Widget, WIDGET_VIEW_MIME } from "../../lib/widgets/widget";
import { AnyWidget, Button, Dropdown, FloatLogSlider, FloatSlider, HBox, IntSlider, Layout, Output, Text, VBox, anywidget } from "../../lib/widgets/controls";

/** A host that records what would go to the front ends, and lets a test play a front end. */
class RecordingHost implements WidgetHost {
  readonly connected = true;
  readonly opened: { id: string; model: HostedModel; state: Record<string, unknown>; bufferPaths: unknown[]; buffers: Uint8Array[] }[] = [];
  readonly sent: { id: string; data: Record<string, unknown>; buffers: Uint8Array[]; parent: unknown }[] = [];
  readonly closed: string[] = [];
  private n = 0;
  open(model: HostedModel) {
    const id = `m${++this.n}`;
    const full = model.fullState();
    this.opened.push({ id, model, state: full.state, bufferPaths: full.bufferPaths, buffers: full.buffers });
    return { id, send: (data: Record<string, unknown>, buffers: Uint8Array[] = [], parent?: unknown) => void this.sent.push({ id, data, buffers, parent }), close: () => void this.closed.push(id) };
  }
  /** A front end's comm_msg to model `id`. */
  fromFrontEnd(id: string, data: Record<string, unknown>, buffers: Uint8Array[] = [], parent: unknown = { msg_id: "front-1" }) {
    this.opened.find((o) => o.id === id)!.model.receive(data, buffers, parent);
  }
  to(id: string) {
    return this.sent.filter((s) => s.id === id);
  }
}

let host: RecordingHost;
let previous: WidgetHost;
test.before.each(() => {
  host = new RecordingHost();
  previous = setWidgetHost(host);
});
test.after.each(() => {
  setWidgetHost(previous);
});

test("a slider opens with the ipywidgets 8 model, its Layout and style models, and displays as a widget view", () => {
  const s = new FloatSlider({ description: "encoder mask", value: 0.3, min: 0, max: 0.95, step: 0.01 });
  // the layout and style models open first: the slider's state refers to them
  const [layout, style, slider] = host.opened;
  assert.equal([layout.state._model_name, layout.state._model_module, layout.state._model_module_version], ["LayoutModel", "@jupyter-widgets/base", "2.0.0"]);
  assert.equal([style.state._model_name, style.state._view_name, style.state._view_module], ["SliderStyleModel", "StyleView", "@jupyter-widgets/base"]);
  assert.equal(
    Object.fromEntries(["_model_name", "_model_module", "_model_module_version", "_view_name", "_view_module", "_view_module_version", "value", "min", "max", "step", "readout_format", "behavior", "continuous_update", "orientation", "layout", "style"].map((k) => [k, slider.state[k]])),
    { _model_name: "FloatSliderModel", _model_module: "@jupyter-widgets/controls", _model_module_version: "2.0.0", _view_name: "FloatSliderView", _view_module: "@jupyter-widgets/controls", _view_module_version: "2.0.0", value: 0.3, min: 0, max: 0.95, step: 0.01, readout_format: ".2f", behavior: "drag-tap", continuous_update: true, orientation: "horizontal", layout: `IPY_MODEL_${layout.id}`, style: `IPY_MODEL_${style.id}` },
  );
  assert.equal(s.toMimeBundle()[WIDGET_VIEW_MIME], { model_id: s.id, version_major: 2, version_minor: 1 });
  assert.match(s.toMimeBundle()["text/plain"] as string, /^FloatSlider\(value=0\.3, min=0, max=0\.95, step=0\.01, description="encoder mask"/);
  assert.ok(liveWidgets().includes(s));
  s.close();
  assert.equal(host.closed.sort(), [layout.id, style.id, slider.id].sort(), "its layout and style close with it");
  assert.not.ok(liveWidgets().includes(s));
  assert.throws(() => s.set({ value: 1 }), /This FloatSlider widget is closed; make a new one to change it\./);
});

test("updates both ways: kernel changes go out; a front end's update is echoed to it, observed, and not sent back", () => {
  const s = new IntSlider({ value: 3, max: 10 });
  const seen: unknown[] = [];
  s.observe("value", (c) => seen.push([c.old, c.new, c.source]));
  s.value = 5;
  assert.equal(host.to(s.id).pop()!.data, { method: "update", state: { value: 5 }, buffer_paths: [] });
  host.sent.length = 0;
  host.fromFrontEnd(s.id, { method: "update", state: { value: 7 }, buffer_paths: [] }, [], { msg_id: "f9" });
  assert.is(s.value, 7);
  assert.equal(seen, [[3, 5, "kernel"], [5, 7, "frontend"]]);
  assert.equal(host.to(s.id), [{ id: s.id, data: { method: "echo_update", state: { value: 7 }, buffer_paths: [] }, buffers: [], parent: { msg_id: "f9" } }], "echoed, answering the front end's message; no update back");
  // an observer that changes the value further (a clamp) sends that as an update
  s.observe("value", (c) => {
    if ((c.new as number) > 8) s.value = 8;
  });
  host.sent.length = 0;
  host.fromFrontEnd(s.id, { method: "update", state: { value: 10 }, buffer_paths: [] });
  assert.equal(host.to(s.id).map((m) => m.data.method), ["echo_update", "update"]);
  assert.equal(host.to(s.id)[1].data.state, { value: 8 });
  // request_state: the whole state
  host.sent.length = 0;
  host.fromFrontEnd(s.id, { method: "request_state" });
  const full = host.to(s.id)[0].data;
  assert.is(full.method, "update");
  assert.is((full.state as Record<string, unknown>).value, 8);
  assert.is((full.state as Record<string, unknown>)._model_name, "IntSliderModel");
  assert.throws(() => new IntSlider({ value: 1.5 }), /IntSlider value must be a whole number; got 1\.5\./);
  assert.throws(() => new FloatSlider({ value: 2, max: 1 }), /FloatSlider: value 2 is outside \[0, 1\]; pass a value in range or widen min\/max\./);
});

test("binary buffers travel at their paths both ways; references are IPY_MODEL_ strings", () => {
  const bytes = Uint8Array.from([1, 2, 3]);
  const floats = Float32Array.from([0.5, -1]);
  const s = serializeState({ a: 1, img: bytes, nested: { x: [floats, 7] } });
  assert.equal(s.state, { a: 1, nested: { x: [null, 7] } });
  assert.equal(s.bufferPaths, [["img"], ["nested", "x", 0]]);
  assert.equal([...s.buffers[0]], [1, 2, 3]);
  assert.equal([...new Float32Array(s.buffers[1].buffer.slice(s.buffers[1].byteOffset, s.buffers[1].byteOffset + 8))], [0.5, -1]);
  const back = deserializeState(s.state, s.bufferPaths, s.buffers);
  assert.equal([...(back.img as Uint8Array)], [1, 2, 3]);
  assert.is(((back.nested as { x: unknown[] }).x[1]), 7);
  // a widget with a binary attribute: sent at its path, and a front end's buffer arrives as bytes
  const w = anywidget({ esm: "export function render() {}", data: new Uint8Array([9, 9]) });
  const opened = host.opened.find((o) => o.id === w.id)!;
  assert.equal(opened.bufferPaths, [["data"]]);
  assert.equal([...opened.buffers[0]], [9, 9]);
  host.fromFrontEnd(w.id, { method: "update", state: {}, buffer_paths: [["data"]] }, [Uint8Array.from([4, 5, 6])]);
  assert.equal([...(w.get("data" as never) as Uint8Array)], [4, 5, 6]);
  const echo = host.to(w.id).find((m) => m.data.method === "echo_update")!;
  assert.equal(echo.data.buffer_paths, [["data"]]);
  assert.equal([...echo.buffers[0]], [4, 5, 6]);
  // children are references, resolved back to widgets
  const a = new Text({ value: "a" });
  const b = new Button({ description: "go" });
  const box = new HBox([a, b]);
  assert.equal(host.opened.find((o) => o.id === box.id)!.state.children, [`IPY_MODEL_${a.id}`, `IPY_MODEL_${b.id}`]);
  assert.equal(deserializeState({ children: [`IPY_MODEL_${a.id}`] }, [], []).children, [a]);
  const v = new VBox([box]);
  assert.equal(v.children, [box]);
});

test("custom messages both ways: a click, anywidget's model.send, and send() to the page", () => {
  const b = new Button({ description: "probe now" });
  let clicks = 0;
  b.onClick(() => clicks++);
  host.fromFrontEnd(b.id, { method: "custom", content: { event: "click" } });
  assert.is(clicks, 1);
  const w = new AnyWidget({ esm: "export function render({ model, el }) { model.send({ hello: 1 }); }", count: 0 });
  const got: unknown[] = [];
  w.onMsg((content, buffers) => got.push([content, buffers.length]));
  host.fromFrontEnd(w.id, { method: "custom", content: { hello: 1 } }, [Uint8Array.from([1])]);
  assert.equal(got, [[{ hello: 1 }, 1]]);
  w.send({ reply: 2 }, [Uint8Array.from([7, 8])]);
  const out = host.to(w.id).pop()!;
  assert.equal(out.data, { method: "custom", content: { reply: 2 } });
  assert.equal([...out.buffers[0]], [7, 8]);
  const st = host.opened.find((o) => o.id === w.id)!.state;
  assert.equal([st._model_name, st._model_module, st._view_name, st._view_module, st.count], ["AnyModel", "anywidget", "AnyView", "anywidget", 0]);
  assert.throws(() => anywidget({ esm: "" } as never), /anywidget needs `esm`: ES module source exporting render/);
});

test("link keeps two attributes equal both ways; unlink stops it; Dropdown, Output and the log slider", () => {
  const a = new FloatSlider({ value: 0.1, max: 1 });
  const b = new FloatLogSlider({ value: 1, min: -2, max: 1 });
  const unlink = link([a, "value"], [b, "value"]);
  assert.is(b.value, 0.1);
  a.value = 0.5;
  assert.is(b.value, 0.5);
  host.fromFrontEnd(b.id, { method: "update", state: { value: 0.25 } });
  assert.is(a.value, 0.25);
  unlink();
  a.value = 0.9;
  assert.is(b.value, 0.25);
  const d = new Dropdown({ options: [["small", 16], ["large", 32]] as [string, number][], value: 32 });
  assert.is(d.value, 32);
  assert.equal(host.opened.find((o) => o.id === d.id)!.state._options_labels, ["small", "large"]);
  host.fromFrontEnd(d.id, { method: "update", state: { index: 0 } });
  assert.is(d.value, 16);
  assert.throws(() => (d.value = 64), /Dropdown: 64 is not one of the options \(small, large\)\./);
  const o = new Output();
  o.appendText("hi\n").appendDisplay({ "text/plain": "x" });
  assert.equal(o.get("outputs"), [{ output_type: "stream", name: "stdout", text: "hi\n" }, { output_type: "display_data", data: { "text/plain": "x" }, metadata: {} }]);
  assert.equal(host.opened.find((x) => x.id === o.id)!.state._model_module, "@jupyter-widgets/output");
  assert.throws(() => new FloatLogSlider({ value: 1e6 }), /value 1000000 is outside \[1, 10000\]/);
  assert.ok(new Layout({ width: "100px" }).get("width") === "100px");
  // layout CSS and style attributes reach their models, for every kind of control
  for (const w of [new FloatSlider({ layout: { width: "300px" }, style: { description_width: "90px" } }), new Text({ layout: { width: "300px" }, style: { description_width: "90px" } }), new VBox([], { layout: { width: "300px" } })]) {
    assert.is((w.get("layout") as Layout).get("width"), "300px", w.spec.modelName);
    const style = (w.getState() as Record<string, unknown>).style as Widget | undefined;
    if (style) assert.is(style.get("description_width" as never), "90px", w.spec.modelName);
  }
});

test("without a kernel, widgets still work on their own: state, observers, clicks", () => {
  setWidgetHost(previous); // the local host
  const s = new FloatSlider({ value: 0.2, max: 1 });
  let n = 0;
  s.observe("*", () => n++);
  s.set({ value: 0.4, description: "x" });
  assert.is(n, 2);
  assert.match(s.id, /^local-/);
  assert.ok(s instanceof Widget);
});

test.run();
