/**
 * Saved notebooks keep their widgets: `retromae run` writes the live widget
 * models into metadata.widgets (as nbclient does), and the HTML report
 * renders them offline with the vendored embed manager, checked in headless
 * Chromium with the network off.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { chromium } from "playwright-core";
import { installKernel } from "../kernel/harness";
import { WidgetStateCollector } from "../../runner/widgets";

const ROOT = path.resolve(__dirname, "..", "..");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-widget-run-"));
const { env, prefix } = installKernel();

const cells = [
  'import { FloatSlider, HBox, Button, Label, anywidget } from "retromae";\nconst s = new FloatSlider({ description: "encoder mask", value: 0.3, max: 0.95, step: 0.01 });\nconst b = new Button({ description: "probe now" });\nnew HBox([s, b])',
  's.value = 0.45;\nconst gone = new Label("temporary");\ngone.close();\nconst a = anywidget({ esm: "export function render({ model, el }) { el.textContent = String(model.get(\'data\').byteLength); }", data: new Uint8Array([1, 2, 3]) });\na',
];

test("retromae run saves the widget state in the notebook, and its HTML report renders the widgets offline", async () => {
  const nb = { cells: cells.map((source) => ({ cell_type: "code", source, metadata: {}, outputs: [], execution_count: null })), metadata: { kernelspec: { name: "retromae" } }, nbformat: 4, nbformat_minor: 5 };
  const file = path.join(work, "w.ipynb");
  fs.writeFileSync(file, JSON.stringify(nb));
  const html = path.join(work, "w.html");
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "retromae.js"), "run", file, "--html", html], { encoding: "utf8", timeout: 180_000, env });
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(fs.readFileSync(path.join(work, "w.out.ipynb"), "utf8"));
  const saved = out.metadata.widgets["application/vnd.jupyter.widget-state+json"];
  assert.equal([saved.version_major, saved.version_minor], [2, 0]);
  const models = Object.values(saved.state) as { model_name: string; model_module: string; model_module_version: string; state: Record<string, unknown>; buffers?: unknown[] }[];
  const slider = models.find((m) => m.model_name === "FloatSliderModel")!;
  assert.equal([slider.model_module, slider.model_module_version, slider.state.value], ["@jupyter-widgets/controls", "2.0.0", 0.45], "the value set by the later cell");
  const box = models.find((m) => m.model_name === "HBoxModel")!;
  for (const ref of box.state.children as string[]) assert.ok(ref.replace("IPY_MODEL_", "") in saved.state, "children are saved too");
  assert.not.ok(models.some((m) => m.model_name === "LabelModel"), "a closed widget is not saved");
  const any = models.find((m) => m.model_name === "AnyModel")!;
  assert.equal(any.buffers, [{ encoding: "base64", path: ["data"], data: "AQID" }]);
  const page = fs.readFileSync(html, "utf8");
  assert.match(page, /<script type="application\/vnd\.jupyter\.widget-state\+json">/);
  assert.match(page, /@jupyter-widgets\/html-manager 1\.0\.15 embed\.js/);
  assert.is((page.match(/<script type="application\/vnd\.jupyter\.widget-view\+json">/g) ?? []).length, 1, "the box's view; the anywidget (not in the embed manager) shows its text");
  assert.match(page, /AnyWidget\(/);

  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update"] });
  try {
    const context = await browser.newContext({ offline: true });
    const tab = await context.newPage();
    const errors: string[] = [];
    tab.on("pageerror", (e) => errors.push(String(e)));
    await tab.goto(`file://${html}`);
    await tab.waitForSelector(".widget-hbox .widget-slider", { timeout: 60_000 });
    assert.match((await tab.textContent(".widget-slider .widget-readout")) ?? (await tab.inputValue(".widget-slider .widget-readout")), /0\.45/);
    assert.match((await tab.textContent(".widget-hbox button")) ?? "", /probe now/);
    assert.match((await tab.textContent(".widget-slider .widget-label")) ?? "", /encoder mask/);
    await tab.screenshot({ path: path.join(work, "widgets.png") });
    assert.equal(errors, []);
    await context.close();
  } finally {
    await browser.close();
  }
});

test("the collector follows comm_open, update, echo_update and comm_close, buffers included", () => {
  const c = new WidgetStateCollector();
  const msg = (msg_type: string, content: Record<string, unknown>, buffers: Buffer[] = []) => ({ header: { msg_type }, content, buffers }) as never;
  c.apply(msg("comm_open", { comm_id: "a", target_name: "jupyter.widget", data: { state: { _model_name: "IntSliderModel", _model_module: "@jupyter-widgets/controls", _model_module_version: "2.0.0", value: 1 }, buffer_paths: [["x"]] } }, [Buffer.from([1])]));
  c.apply(msg("comm_open", { comm_id: "other", target_name: "not.a.widget", data: {} }));
  c.apply(msg("comm_msg", { comm_id: "a", data: { method: "update", state: { value: 2 }, buffer_paths: [] } }));
  c.apply(msg("comm_msg", { comm_id: "a", data: { method: "echo_update", state: { x: null }, buffer_paths: [["x"]] } }, [Buffer.from([7, 7])]));
  c.apply(msg("comm_msg", { comm_id: "a", data: { method: "custom", content: {} } }));
  const s = c.state()!;
  assert.equal(Object.keys(s.state), ["a"]);
  assert.is(s.state.a.state.value, 2);
  assert.equal(s.state.a.buffers, [{ encoding: "base64", path: ["x"], data: "Bwc=" }]);
  c.apply(msg("comm_close", { comm_id: "a", data: {} }));
  assert.is(c.state(), null);
});

test.after(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(prefix, { recursive: true, force: true });
});
test.run();
