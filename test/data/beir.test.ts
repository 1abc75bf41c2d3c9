import { test } from "uvu";
import * as assert from "uvu/assert";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import { zipSync, strToU8 } from "fflate";
import { fetchDataset, importDataset, loadBeir, resolveDataset } from "../../lib/data/beir";
import { SHARED_DATA } from "../helpers";

const SCIFACT = path.join(SHARED_DATA, "beir-scifact");
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "beir-"));

function smallZip(): Buffer {
  return Buffer.from(
    zipSync({
      "tiny/corpus.jsonl": strToU8('{"_id":"d1","title":"T1","text":"alpha"}\n{"_id":"d2","title":"","text":"beta"}\n'),
      "tiny/queries.jsonl": strToU8('{"_id":"q1","text":"alpha?"}\n'),
      "tiny/qrels/test.tsv": strToU8("query-id\tcorpus-id\tscore\nq1\td1\t1\n"),
    }),
  );
}

/** A server on 127.0.0.1 that serves /tiny.zip (and /broken.zip, truncated). */
async function serve(zip: Buffer): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.url === "/tiny.zip") res.end(zip);
    else if (req.url === "/broken.zip") res.end(zip.subarray(0, zip.length - 10));
    else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}

test("SciFact loads from a folder: 5,183 docs, 1,109 queries, 300 test queries with qrels", () => {
  const ds = loadBeir(SCIFACT);
  assert.is(ds.corpus.size, 5183);
  assert.is(ds.queries.size, 1109);
  assert.is(ds.qrels.size, 300);
  assert.is([...ds.qrels.values()].reduce((n, m) => n + m.size, 0), 339);
  assert.is(loadBeir(SCIFACT, "train").qrels.size > 0, true);
});

test("fetch downloads over HTTP, checks sha256 and unpacks atomically; a corrupt download leaves nothing", async () => {
  const zip = smallZip();
  const sha = crypto.createHash("sha256").update(zip).digest("hex");
  const server = await serve(zip);
  const dir = tmp();
  try {
    const where = await fetchDataset("tiny", { dir, url: `${server.url}/tiny.zip`, sha256: sha });
    assert.is(where, path.join(dir, "tiny"));
    const ds = loadBeir(where);
    assert.is(ds.corpus.get("d1")!.title, "T1");
    assert.equal([...ds.qrels.get("q1")!], [["d1", 1]]);
    assert.equal(fs.readdirSync(dir), ["tiny"], "no temporaries left");

    const other = tmp();
    try {
      await fetchDataset("tiny", { dir: other, url: `${server.url}/broken.zip`, sha256: sha });
      assert.unreachable();
    } catch (e) {
      assert.match((e as Error).message, /^The download of tiny is corrupt: its sha256 is [0-9a-f]{64}, expected [0-9a-f]{64}; nothing was installed, try again\.$/);
    }
    assert.equal(fs.readdirSync(other), [], "no partial dataset");
    try {
      await fetchDataset("tiny", { dir: other, url: `${server.url}/missing.zip`, sha256: sha });
      assert.unreachable();
    } catch (e) {
      assert.match((e as Error).message, /failed with HTTP 404/);
    }
    // a second fetch replaces the first only once complete
    await fetchDataset("tiny", { dir, url: `${server.url}/tiny.zip`, sha256: sha });
    assert.equal(fs.readdirSync(dir), ["tiny"]);
  } finally {
    await server.close();
  }
  try {
    await fetchDataset("nope");
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /Unknown dataset "nope"; known: scifact/);
  }
});

test("resolveDataset: the cache first, then the shared folder, then a checked download into the cache; offline and missing, one sentence", async () => {
  const zip = smallZip();
  const sha = crypto.createHash("sha256").update(zip).digest("hex");
  const server = await serve(zip);
  const cache = tmp();
  const shared = tmp();
  try {
    // nowhere on disk: downloaded (from the 127.0.0.1 server) into the cache
    const got = await resolveDataset("tiny", { dir: cache, shared, url: `${server.url}/tiny.zip`, sha256: sha });
    assert.is(got, path.join(cache, "tiny"));
    assert.is(loadBeir(got).corpus.size, 2);
    // now cached: no download (a wrong url would fail)
    assert.is(await resolveDataset("tiny", { dir: cache, shared, url: `${server.url}/missing.zip`, sha256: sha }), got);
    // the shared folder, when the cache lacks it
    fs.mkdirSync(path.join(shared, "beir-other"));
    fs.writeFileSync(path.join(shared, "beir-other", "corpus.jsonl"), "");
    assert.is(await resolveDataset("other", { dir: cache, shared, download: false }), path.join(shared, "beir-other"));
    // the real SciFact resolves to ../shared/data here
    assert.is(await resolveDataset("scifact", { dir: cache, shared: SHARED_DATA, download: false }), SCIFACT);
    try {
      await resolveDataset("nowhere", { dir: cache, shared, download: false });
      assert.unreachable();
    } catch (e) {
      assert.match((e as Error).message, /^Dataset "nowhere" is neither in .* nor in .*; run `retromae data fetch nowhere` with a network, or `retromae data fetch nowhere --from PATH` with an offline copy\.$/);
    }
    try {
      await resolveDataset("tiny2", { dir: cache, shared, url: "http://127.0.0.1:9/tiny.zip", sha256: sha });
      assert.unreachable();
    } catch (e) {
      assert.match((e as Error).message, /^Dataset "tiny2" is neither in .* and fetching it failed: Cannot download http:\/\/127\.0\.0\.1:9\/tiny\.zip/);
    }
  } finally {
    await server.close();
    fs.rmSync(cache, { recursive: true, force: true });
    fs.rmSync(shared, { recursive: true, force: true });
  }
});

test("import of the offline copy checks per-file sha256 of known variants; a changed copy is refused unless unverified", () => {
  const dir = tmp();
  const r = importDataset("scifact", SCIFACT, { dir });
  assert.is(r.variant, "shared-2026");
  assert.is(loadBeir(r.path).corpus.size, 5183);
  const changed = tmp();
  for (const rel of ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "qrels/train.tsv"]) {
    fs.mkdirSync(path.dirname(path.join(changed, rel)), { recursive: true });
    fs.copyFileSync(path.join(SCIFACT, rel), path.join(changed, rel));
  }
  fs.appendFileSync(path.join(changed, "queries.jsonl"), '{"_id":"extra","text":"x"}\n');
  const dir2 = tmp();
  assert.throws(() => importDataset("scifact", changed, { dir: dir2 }), /matches no known variant of scifact \(differs in shared-2026: queries.jsonl\); pass --no-verify/);
  assert.equal(fs.readdirSync(dir2), []);
  const unverified = importDataset("scifact", changed, { dir: dir2, verify: false });
  assert.is(unverified.variant, null);
  assert.is(loadBeir(unverified.path).queries.size, 1110);
});

test("zip input loads directly; bad folders and files get one clear sentence", () => {
  const dir = tmp();
  const zipFile = path.join(dir, "tiny.zip");
  fs.writeFileSync(zipFile, smallZip());
  assert.is(loadBeir(zipFile).corpus.size, 2);
  assert.throws(() => loadBeir(path.join(dir, "none")), /does not exist; run `retromae data fetch scifact`/);
  fs.mkdirSync(path.join(dir, "half"));
  fs.writeFileSync(path.join(dir, "half", "corpus.jsonl"), "{bad\n");
  fs.writeFileSync(path.join(dir, "half", "queries.jsonl"), "");
  fs.mkdirSync(path.join(dir, "half", "qrels"));
  fs.writeFileSync(path.join(dir, "half", "qrels", "test.tsv"), "");
  assert.throws(() => loadBeir(path.join(dir, "half")), /corpus.jsonl line 1 is not valid JSON/);
});

test.run();
