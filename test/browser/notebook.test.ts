/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The real-browser check: Debian's jupyter-notebook server on 127.0.0.1 with
 * the kernel installed, Debian's chromium driven headless by playwright-core.
 * It opens the reduced quickstart, runs all cells from the Cell menu, and
 * checks that the live chart updated at least twice, that the final chart
 * was drawn by plotly.js, and that no cell shows an error. A screenshot goes
 * to test/artifacts/ (not committed).
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { chromium, Browser } from "playwright-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { injectParameters, readNotebook } from "../../runner/runner";
import { installKernel } from "../kernel/harness";
import { CHROMIUM, CHROMIUM_FLAGS, NotebookServer, startNotebookServer, tearDown } from "./server";

const ROOT = path.resolve(__dirname, "..", "..");
const ARTIFACTS = path.join(ROOT, "test", "artifacts");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "retromae-browser-"));
const { env, prefix } = installKernel();
let server: NotebookServer | null = null;
let browser: Browser | null = null;

test("the reduced quickstart runs in a real browser: live chart updates, final chart drawn, no errors", async () => {
  const nb = readNotebook(path.join(ROOT, "notebooks", "quickstart.ipynb"));
  injectParameters(nb, { steps: "6", batchSize: "8", maxLength: "64", probeEvery: "3", probeDocs: "30", runDir: JSON.stringify(path.join(work, "runs")) });
  fs.writeFileSync(path.join(work, "quickstart.ipynb"), JSON.stringify(nb));

  server = await startNotebookServer(work, env);
  const { base, token } = server;

  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(`${base}/notebooks/quickstart.ipynb?token=${token}`);
  await page.waitForFunction(() => {
    const j = (window as unknown as { Jupyter?: { notebook?: { kernel?: { is_connected(): boolean } } } }).Jupyter;
    return !!j?.notebook?.kernel?.is_connected();
  }, undefined, { timeout: 60_000 });

  // Every Plotly figure the page ever draws has its own div id: an update replaces the output with a new one.
  await page.evaluate(() => {
    const w = window as unknown as { __plots: Set<string> };
    w.__plots = new Set();
    new MutationObserver(() => {
      document.querySelectorAll(".retromae-plotly").forEach((el) => w.__plots.add(el.id));
    }).observe(document.body, { childList: true, subtree: true });
  });

  await page.click("#celllink");
  await page.click("#run_all_cells > a");

  // Done when no prompt shows "*" and every code cell has a number.
  await page.waitForFunction(
    () => {
      const prompts = [...document.querySelectorAll(".code_cell .input_prompt")].map((p) => p.textContent ?? "");
      return prompts.length > 0 && prompts.every((p) => /\[\d+\]/.test(p));
    },
    undefined,
    { timeout: 600_000, polling: 500 },
  );

  const plots = await page.evaluate(() => [...(window as unknown as { __plots: Set<string> }).__plots]);
  const drawn = await page.evaluate(() => [...document.querySelectorAll(".retromae-plotly")].filter((el) => el.querySelector(".main-svg")).length);
  const errors = await page.evaluate(() => [...document.querySelectorAll(".output_error")].map((e) => e.textContent ?? ""));
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, "quickstart-browser.png"), fullPage: true });

  assert.equal(errors, [], "no cell shows an error");
  // Two training cells, each drawn once and then updated as it trains.
  assert.ok(plots.length >= 4, `the live charts updated at least twice (saw ${plots.length} renders)`);
  assert.ok(drawn >= 2, `plotly.js drew the final charts (${drawn} drawn)`);
  assert.equal(pageErrors, [], "no JavaScript errors in the page");
});

test("retromae run's HTML report draws its Plotly chart offline", async () => {
  const nb = {
    cells: [{ cell_type: "code", source: 'display.plotly({ data: [{ y: [3, 1, 2], type: "scatter" }], layout: { title: { text: "offline" } } })', metadata: {}, outputs: [], execution_count: null }],
    metadata: { kernelspec: { name: "retromae", display_name: "RetroMAE (TypeScript)", language: "typescript" } },
    nbformat: 4,
    nbformat_minor: 5,
  };
  const file = path.join(work, "plot.ipynb");
  fs.writeFileSync(file, JSON.stringify(nb));
  const html = path.join(work, "plot.html");
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "retromae.js"), "run", file, "--html", html], { encoding: "utf8", timeout: 120_000 });
  assert.is(r.status, 0, r.stderr);
  browser ??= await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
  const context = await browser.newContext({ offline: true });
  const page = await context.newPage();
  const requests: string[] = [];
  page.on("request", (req) => requests.push(req.url()));
  await page.goto(`file://${html}`);
  await page.waitForSelector(".retromae-plotly .main-svg", { timeout: 60_000 });
  assert.match(await page.textContent(".retromae-plotly .gtitle") ?? "", /offline/);
  assert.equal(requests.filter((u) => !u.startsWith("file:") && !u.startsWith("data:") && !u.startsWith("blob:")), [], "no network requests");
  await context.close();
});

test.after(() => tearDown(browser, server, [work, prefix]));
test.run();
