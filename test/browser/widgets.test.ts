/**
 * Widgets in a real browser against the widget manager JupyterLab uses:
 * headless Chromium loads a page bundling @jupyter-widgets/jupyterlab-manager 5
 * (KernelWidgetManager), @jupyter-widgets/base 6, controls 5, anywidget's
 * front end and @jupyterlab/services 7 (widget-page.ts, bundled here by
 * esbuild); the page starts this kernel through Debian's jupyter-notebook
 * server and renders what the cells display. The test moves sliders and
 * clicks buttons in the page, and reads the kernel's side by running cells.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { chromium, Browser, Page } from "playwright-core";
import { installKernel } from "../kernel/harness";
import { CHROMIUM, CHROMIUM_FLAGS, NotebookServer, startNotebookServer, tearDown } from "./server";

const ROOT = path.resolve(__dirname, "..", "..");
const ARTIFACTS = path.join(ROOT, "test", "artifacts");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-widgets-browser-"));
const { env, prefix } = installKernel();
let server: NotebookServer | null = null;
let browser: Browser | null = null;

type PageApi = {
  start(u: string, t: string, k: string): Promise<string>;
  run(code: string): Promise<{ status: string; results: string[] }>;
  launch(code: string): void;
  launched: { status: string; results: string[] }[];
  sendCustom(id: string, content: unknown, buffers: number[][]): Promise<void>;
  seen: { method?: string; parent?: string; state?: Record<string, unknown>; buffers?: number[][]; content?: unknown }[];
  sent: { id: string; data: { method?: string; state?: Record<string, unknown> } }[];
  customs: { model: string; content: unknown; buffers: number[][] }[];
};
const api = (page: Page) => ({
  run: async (code: string) => {
    const r = await page.evaluate((c) => (window as unknown as { widgetPage: PageApi }).widgetPage.run(c), code);
    assert.is(r.status, "ok", `cell failed: ${code}`);
    return r.results.join("\n");
  },
  eval: <T>(fn: (w: PageApi) => T) => page.evaluate(`(${fn.toString()})(window.widgetPage)`) as Promise<T>,
});

/** Type a value into a slider's readout, as a user does: click it, replace the text, Enter. */
async function typeInto(page: Page, sliderLabel: string, value: string): Promise<void> {
  const readout = page.locator(".widget-slider", { has: page.locator(".widget-label", { hasText: sliderLabel }) }).locator(".widget-readout");
  await readout.click();
  await page.keyboard.press("Control+A");
  await page.keyboard.type(value);
  await page.keyboard.press("Enter");
}

const readoutOf = (page: Page, sliderLabel: string) => page.locator(".widget-slider", { has: page.locator(".widget-label", { hasText: sliderLabel }) }).locator(".widget-readout").textContent();

test("JupyterLab's widget manager in Chromium drives the kernel's widgets both ways, and the trainer panel steers a fit", async () => {
  // the page: bundled from widget-page.ts with the npm packages JupyterLab ships
  const esbuild = await import("esbuild");
  await esbuild.build({
    entryPoints: [path.join(__dirname, "widget-page.ts")],
    bundle: true,
    format: "iife",
    outfile: path.join(work, "page.js"),
    loader: { ".css": "css", ".woff": "dataurl", ".woff2": "dataurl", ".eot": "dataurl", ".ttf": "dataurl", ".svg": "dataurl" },
    logLevel: "error",
  });
  fs.writeFileSync(path.join(work, "index.html"), '<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="page.css"></head><body style="display:flex;gap:16px;align-items:flex-start;font-family:sans-serif"><div id="area" style="width:640px"></div><div id="outputs"></div><script src="page.js"></script></body></html>');

  // the page is a file:// page: the server must accept its origin
  server = await startNotebookServer(work, env, ["--NotebookApp.allow_origin=*"]);
  const { base, token } = server;

  browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_FLAGS, "--allow-file-access-from-files"] });
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(`file://${path.join(work, "index.html")}`);
  await page.evaluate(([u, t]) => (window as unknown as { widgetPage: PageApi }).widgetPage.start(u, t, "retromae"), [base, token]);
  const k = api(page);

  // 1. widgets from a cell, shown by the page's manager
  await k.run(`import { FloatSlider, Button, HBox, anywidget } from "retromae";
const s = new FloatSlider({ description: "probe ratio", value: 0.3, max: 0.95, step: 0.01 });
const b = new Button({ description: "ping" });
let clicks = 0;
b.onClick(() => { clicks++; });
b.onMsg((content, buffers) => { if ((content as { bytes?: boolean }).bytes) b.send({ sizes: buffers.map((x) => x.length) }, buffers.map((x) => x.slice().reverse())); });
const values: number[] = [];
s.observe("value", (c) => { values.push(c.new as number); });
const a = anywidget({ esm: "export function render({ model, el }) { el.className = 'any-el'; const show = () => { el.textContent = 'count ' + model.get('count'); }; show(); model.on('change:count', show); model.on('msg:custom', (m) => { if (m.ping) model.send({ pong: m.ping }); }); }", count: 1 });
const pongs: unknown[] = [];
a.onMsg((c) => { pongs.push(c); });
display(new HBox([s, b]));
display(a);`);
  await page.waitForSelector(".widget-slider .widget-readout");
  assert.is(await readoutOf(page, "probe ratio"), "0.30");

  // 2. a kernel-side change moves the slider in the page
  await k.run("s.value = 0.6;");
  await page.waitForFunction(() => [...document.querySelectorAll(".widget-readout")].some((r) => r.textContent === "0.60"));

  // 3. the page moves it: the kernel's observer sees the value, and the kernel echoes the page's own message
  await typeInto(page, "probe ratio", "0.45");
  // (the slider snaps to min + k·step in floating point: 0.44999999999999996)
  await page.waitForFunction(() => (window as unknown as { widgetPage: PageApi }).widgetPage.seen.some((m) => m.method === "echo_update" && Math.abs((m.state?.value as number) - 0.45) < 1e-9));
  assert.is(await k.run("values.map((v) => v.toFixed(6)).join(' ')"), "'0.600000 0.450000'");
  const echo = await k.eval((w) => {
    const e = w.seen.find((m) => m.method === "echo_update" && Math.abs((m.state?.value as number) - 0.45) < 1e-9)!;
    return { parentIsOwnUpdate: w.sent.some((s) => s.id === e.parent && s.data.method === "update" && s.data.state?.value === e.state?.value) };
  });
  assert.ok(echo.parentIsOwnUpdate, "the echo_update answers the page's update message");

  // 4. a click reaches the kernel
  await page.click("button:has-text('ping')");
  await page.waitForTimeout(300);
  assert.is(await k.run("clicks"), "1");

  // 5. buffers both ways, intact
  const bid = (await k.run("b.id")).replace(/'/g, "");
  await page.evaluate(([id]) => (window as unknown as { widgetPage: PageApi }).widgetPage.sendCustom(id, { bytes: true }, [[1, 2, 3], [250, 251]]), [bid]);
  await page.waitForFunction(() => (window as unknown as { widgetPage: PageApi }).widgetPage.customs.length > 0);
  const custom = await k.eval((w) => w.customs[0]);
  assert.equal(custom.content, { sizes: [3, 2] });
  assert.equal(custom.buffers, [[3, 2, 1], [251, 250]]);

  // 6. anywidget: rendered from its ES module, state from the kernel, a custom message round trip (page -> kernel)
  await page.waitForSelector(".any-el");
  assert.is(await page.textContent(".any-el"), "count 1");
  await k.run("a.set({ count: 5 });");
  await page.waitForFunction(() => document.querySelector(".any-el")?.textContent === "count 5");
  await k.run("a.send({ ping: 7 });");
  await page.waitForTimeout(500);
  // the page's module answers each custom message it gets (anywidget may hand it to the module more than once)
  assert.is(await k.run("pongs.length > 0 && pongs.every((p) => JSON.stringify(p) === '{\"pong\":7}')"), "true");
  assert.is(await page.locator(".any-el").count(), 1);

  // 7. the trainer's panel, shown by the cell that runs the fit: the page moves the encoder slider, then stops the run
  const runDir = path.join(work, "panel-run");
  await k.run(`import { RetroMAE, Trainer, BertTokenizer, PackedCorpus, Rng } from "retromae";
const tok = BertTokenizer.bertBaseUncased();
const data = PackedCorpus.fromTexts(Array.from({ length: 40 }, (_, i) => \`the cell \${i} divides and the protein folds into shape \${i}\`), tok, 32);
const rng = new Rng(3);
const model = RetroMAE.create("tiny", { rng, overrides: { hiddenSize: 32, numAttentionHeads: 2, intermediateSize: 64, numHiddenLayers: 1 } });
const trainer = new Trainer({ model, tokenizer: tok, data, rng, batchSize: 4, maxLength: 32, lr: 1e-3, runDir: ${JSON.stringify(runDir)} });`);
  // the cell that shows the panel runs the fit; its live chart and progress bar are drawn beside the panel, as in a notebook
  // (test/kernel/widget_checks.py steers a fit from a panel shown by an earlier cell)
  await page.evaluate(() => (window as unknown as { widgetPage: PageApi }).widgetPage.launch("display(trainer.controls());\nconst fitted = await trainer.fit({ steps: 100000, liveIntervalMs: 250 });\nfitted.status"));
  await page.waitForSelector("text=stop after this step");
  await page.waitForFunction(() => /running/.test(document.body.textContent ?? ""), undefined, { timeout: 60_000 });
  await page.waitForSelector("#outputs .main-svg", { timeout: 60_000 });
  await typeInto(page, "encoder mask", "0.45");
  await page.waitForTimeout(2500);
  await page.click("button:has-text('stop after this step')");
  await page.waitForFunction(() => (window as unknown as { widgetPage: PageApi }).widgetPage.launched.length > 0, undefined, { timeout: 60_000 });
  assert.equal(await k.eval((w) => w.launched[0].results), ["'stopped'"]);
  const rows = fs.readFileSync(path.join(runDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const change = rows.find((r) => r.change);
  assert.equal([change.change.field, change.change.old, change.change.new, change.change.source], ["encoderMaskRatio", 0.3, 0.45, "panel"]);
  const steps = rows.filter((r) => r.loss !== undefined).map((r) => r.step);
  assert.ok(change.step > 1 && change.step <= steps[steps.length - 1], `the change applied from step ${change.step}, within the run's ${steps.length} steps`);
  assert.match((await page.textContent("body")) ?? "", /encoder mask ratio 0\.3 → 0\.45/);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  // the chart marks the change at its step
  await page.waitForFunction(() => [...document.querySelectorAll("#outputs .annotation-text")].some((t) => /enc 0\.3→0\.45/.test(t.textContent ?? "")), undefined, { timeout: 30_000 });
  await page.screenshot({ path: path.join(ARTIFACTS, "widgets-browser.png"), fullPage: true });
  assert.equal(pageErrors, [], "no JavaScript errors in the page");
});

test.after(() => tearDown(browser, server, [work, prefix]));
test.run();
