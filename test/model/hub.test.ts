/**
 * Hub downloads against a server on 127.0.0.1 laid out like the Hugging Face
 * Hub (resolve URLs, X-Repo-Commit, LFS redirects with X-Linked-Etag, Range).
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { use } from "../../lib/engine/backend";
import { Rng } from "../../lib/engine/rng";
import { saveCheckpoint } from "../../lib/model/retromae";
import { hubSnapshot } from "../../lib/model/hub";
import { RetroMAE } from "../../lib/model/retromae";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const tmp = (p: string) => fs.mkdtempSync(path.join(os.tmpdir(), p));
const fixture = tmp("hub-fixture-");
let weights: Buffer;
let weightsSha: string;
let config: Buffer;

interface ServerState {
  gets: string[];
  range: boolean;
  needToken: boolean;
}
const state: ServerState = { gets: [], range: true, needToken: false };
let server: http.Server;
let endpoint = "";

/** /org/sharded-bin: the pytorch_model.bin shards and index of test/fixtures/torch/sharded, as plain files. */
const SHARDED = path.join(__dirname, "..", "fixtures", "torch", "sharded");

function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? "";
  const sharded = /^\/org\/sharded-bin\/resolve\/main\/(.+)$/.exec(url);
  if (sharded) {
    if (req.method === "GET") state.gets.push(url);
    const file = path.join(SHARDED, sharded[1]);
    if (!fs.existsSync(file)) return void res.writeHead(404).end();
    const body = fs.readFileSync(file);
    res.writeHead(200, { "X-Repo-Commit": COMMIT, ETag: `"${crypto.createHash("sha1").update(body).digest("hex")}"`, "Content-Length": body.length });
    return void res.end(req.method === "HEAD" ? undefined : body);
  }
  if (req.method === "GET") state.gets.push(url);
  if (state.needToken && req.headers.authorization !== "Bearer secret") {
    res.writeHead(401).end();
    return;
  }
  if (url === "/org/tiny/resolve/main/config.json") {
    res.writeHead(200, { "X-Repo-Commit": COMMIT, ETag: `"${crypto.createHash("sha1").update(config).digest("hex")}"`, "Content-Length": config.length });
    res.end(req.method === "HEAD" ? undefined : config);
  } else if (url === "/org/tiny/resolve/main/model.safetensors") {
    res.writeHead(302, { Location: `/cdn/${weightsSha}`, "X-Repo-Commit": COMMIT, "X-Linked-Etag": `"${weightsSha}"`, "X-Linked-Size": weights.length, "Content-Length": 0 });
    res.end();
  } else if (url === `/cdn/${weightsSha}`) {
    const m = /bytes=(\d+)-/.exec(String(req.headers.range ?? ""));
    if (m && state.range) {
      const start = Number(m[1]);
      if (start >= weights.length) {
        res.writeHead(416).end();
        return;
      }
      res.writeHead(206, { "Content-Range": `bytes ${start}-${weights.length - 1}/${weights.length}`, "Content-Length": weights.length - start });
      res.end(weights.subarray(start));
    } else {
      res.writeHead(200, { "Content-Length": weights.length });
      res.end(weights);
    }
  } else res.writeHead(404).end();
}

test.before(async () => {
  await use("cpu");
  const model = RetroMAE.create("tiny", { rng: new Rng(5), overrides: { hiddenSize: 16, numAttentionHeads: 2, intermediateSize: 32, numHiddenLayers: 1, vocabSize: 64, maxPositionEmbeddings: 32 } });
  await saveCheckpoint(model, fixture);
  model.dispose();
  weights = fs.readFileSync(path.join(fixture, "model.safetensors"));
  weightsSha = crypto.createHash("sha256").update(weights).digest("hex");
  config = fs.readFileSync(path.join(fixture, "config.json"));
  server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

test.after(() => {
  server.close();
  fs.rmSync(fixture, { recursive: true, force: true });
});

async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected a rejection matching ${re}`);
}

function sameWeights(a: RetroMAE, b: RetroMAE): boolean {
  return [...a.weights].every(([k, w]) => {
    const x = w.dataSync();
    const y = b.weights.get(k)!.dataSync();
    return x.length === y.length && x.every((v, i) => v === y[i]);
  });
}

test("downloads into huggingface_hub's cache layout, and a second load downloads nothing", async () => {
  const cache = tmp("hub-cache-");
  state.gets = [];
  const model = await RetroMAE.fromPretrained("org/tiny", { endpoint, cacheDir: cache, rng: new Rng(1) });
  const local = await RetroMAE.fromPretrained(fixture, { rng: new Rng(1) });
  assert.ok(sameWeights(model, local));
  const repo = path.join(cache, "models--org--tiny");
  assert.is(fs.readFileSync(path.join(repo, "refs", "main"), "utf8"), COMMIT);
  const link = path.join(repo, "snapshots", COMMIT, "model.safetensors");
  assert.ok(fs.lstatSync(link).isSymbolicLink());
  assert.is(path.resolve(path.dirname(link), fs.readlinkSync(link)), path.join(repo, "blobs", weightsSha));
  assert.ok(state.gets.includes(`/cdn/${weightsSha}`));
  state.gets = [];
  await RetroMAE.fromPretrained("org/tiny", { endpoint, cacheDir: cache });
  assert.equal(state.gets, [], "nothing downloaded again");
  model.dispose();
  local.dispose();
});

test("HF_ENDPOINT and HF_HOME are honoured", async () => {
  const home = tmp("hf-home-");
  const saved = { ...process.env };
  process.env.HF_ENDPOINT = endpoint;
  process.env.HF_HOME = home;
  delete process.env.HF_HUB_CACHE;
  try {
    const dir = await hubSnapshot("org/tiny");
    assert.is(dir, path.join(home, "hub", "models--org--tiny", "snapshots", COMMIT));
  } finally {
    process.env = saved;
  }
});

test("a partial download is resumed with a Range request, and checked before use", async () => {
  const cache = tmp("hub-resume-");
  const blobs = path.join(cache, "models--org--tiny", "blobs");
  fs.mkdirSync(blobs, { recursive: true });
  fs.writeFileSync(path.join(blobs, `${weightsSha}.incomplete`), weights.subarray(0, 1000));
  const lines: string[] = [];
  await hubSnapshot("org/tiny", { endpoint, cacheDir: cache, log: (l) => lines.push(l) });
  assert.ok(lines.some((l) => l.startsWith("resuming model.safetensors at 1000 bytes")), lines.join("\n"));
  assert.is(crypto.createHash("sha256").update(fs.readFileSync(path.join(blobs, weightsSha))).digest("hex"), weightsSha);
  assert.not.ok(fs.existsSync(path.join(blobs, `${weightsSha}.incomplete`)));
});

test("a corrupt partial is discarded and downloaded again; a server without Range support starts over", async () => {
  const cache = tmp("hub-corrupt-");
  const blobs = path.join(cache, "models--org--tiny", "blobs");
  fs.mkdirSync(blobs, { recursive: true });
  fs.writeFileSync(path.join(blobs, `${weightsSha}.incomplete`), crypto.randomBytes(1000));
  const lines: string[] = [];
  await hubSnapshot("org/tiny", { endpoint, cacheDir: cache, log: (l) => lines.push(l) });
  assert.ok(lines.some((l) => l.includes("sha256 does not match")), lines.join("\n"));
  assert.is(crypto.createHash("sha256").update(fs.readFileSync(path.join(blobs, weightsSha))).digest("hex"), weightsSha);

  const cache2 = tmp("hub-norange-");
  const blobs2 = path.join(cache2, "models--org--tiny", "blobs");
  fs.mkdirSync(blobs2, { recursive: true });
  fs.writeFileSync(path.join(blobs2, `${weightsSha}.incomplete`), weights.subarray(0, 1000));
  state.range = false;
  try {
    await hubSnapshot("org/tiny", { endpoint, cacheDir: cache2 });
  } finally {
    state.range = true;
  }
  assert.is(fs.statSync(path.join(blobs2, weightsSha)).size, weights.length);
});

test("offline: a cached repo loads with HF_HUB_OFFLINE=1; an uncached one gets one sentence", async () => {
  const cache = tmp("hub-offline-");
  await hubSnapshot("org/tiny", { endpoint, cacheDir: cache });
  state.gets = [];
  const dir = await hubSnapshot("org/tiny", { cacheDir: cache, localFilesOnly: true, endpoint: "http://127.0.0.1:9" });
  assert.ok(fs.existsSync(path.join(dir, "config.json")));
  assert.equal(state.gets, []);
  await rejects(hubSnapshot("org/other", { cacheDir: cache, localFilesOnly: true }), /is not in the cache .* downloads are off/);
});

test("errors: unknown repo, needs a token, unreachable endpoint, bad ids", async () => {
  const cache = tmp("hub-err-");
  await rejects(hubSnapshot("org/missing", { endpoint, cacheDir: cache }), /org\/missing@main on .* has no config\.json; check the repo id and revision\./);
  state.needToken = true;
  try {
    await rejects(hubSnapshot("org/tiny", { endpoint, cacheDir: cache, token: "" }), /needs access \(HTTP 401\); accept its terms on the Hub and set HF_TOKEN\./);
    assert.ok(await hubSnapshot("org/tiny", { endpoint, cacheDir: cache, token: "secret" }));
  } finally {
    state.needToken = false;
  }
  await rejects(hubSnapshot("org/tiny", { endpoint: "http://127.0.0.1:9", cacheDir: tmp("hub-x-") }), /Cannot reach http:\/\/127\.0\.0\.1:9 .*pass a local folder\./);
  await rejects(hubSnapshot("not a repo!", { cacheDir: cache }), /neither a folder nor a Hub repo id/);
});

test("a repo with only sharded pytorch_model.bin files: the index, then every shard it lists, and it loads", async () => {
  const cache = tmp("hub-bin-");
  const lines: string[] = [];
  const dir = await hubSnapshot("org/sharded-bin", { endpoint, cacheDir: cache, log: (l) => lines.push(l) });
  const got = fs.readdirSync(dir).sort();
  assert.equal(got, ["config.json", "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json"]);
  const model = await RetroMAE.fromPretrained(dir);
  assert.is(model.config.hiddenSize, 8);
  model.dispose();
  // Offline, the cached shards are enough.
  assert.is(await hubSnapshot("org/sharded-bin", { cacheDir: cache, localFilesOnly: true }), dir);
  fs.rmSync(path.join(dir, "pytorch_model-00002-of-00002.bin"));
  await rejects(hubSnapshot("org/sharded-bin", { cacheDir: cache, localFilesOnly: true }), /is not in the cache/);
});

test.run();
