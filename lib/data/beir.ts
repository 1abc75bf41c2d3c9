/**
 * BEIR datasets (Thakur et al., 2021): corpus.jsonl, queries.jsonl and
 * qrels/{split}.tsv, from a folder or from BEIR's zip; downloads checked
 * against the zip's checksum and unpacked atomically; offline copies checked
 * against per-file sha256 sums of known variants.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { unzipSync } from "fflate";
import { hashFile, PACKAGE_ROOT, replaceDirAtomic } from "../util/files";

export interface BeirDoc {
  title: string;
  text: string;
}

export interface BeirDataset {
  name: string;
  /** Insertion order is the file's order. */
  corpus: Map<string, BeirDoc>;
  queries: Map<string, string>;
  /** query id -> doc id -> graded relevance */
  qrels: Map<string, Map<string, number>>;
}

export interface KnownDataset {
  url: string;
  /** Checksums of the zip as downloaded. */
  zipSha256?: string;
  zipMd5?: string;
  /** Known variants of the unpacked files: name -> relative path -> sha256. */
  variants: Record<string, Record<string, string>>;
}

/**
 * Datasets this project knows. SciFact's md5 is BEIR's published one; the
 * sha256 of the same zip is as pinned by a public project that downloads it
 * (it cannot be downloaded from this machine to check). The "shared-2026"
 * variant is the rebuilt copy in ../shared/data (its README lists the sums).
 */
export const KNOWN_DATASETS: Record<string, KnownDataset> = {
  scifact: {
    url: "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip",
    zipMd5: "5f7d1de60b170fc8027bb7898e2efca1",
    zipSha256: "536e14446a0ba56ed1398ab1055f39fe852686ecad24a6306c80c490fa8e0165",
    variants: {
      "shared-2026": {
        "corpus.jsonl": "ae39e2b331413acd6c58c262e3d2c1bf2b4afb5407ccfa6d06dd3f06e5da1f28",
        "queries.jsonl": "8ff84a7c903f722981cd8d595c022660140c51867b27608a6d4910db86080313",
        "qrels/test.tsv": "68c0ac63f1c24b9e8ce497649694f09b2d0850bab7ec2b103cc66996f5f8b3a3",
        "qrels/train.tsv": "ac0902d9b1cb717df182aaff1306175877fdb8f55bb5c3e8597ad694fc8e539f",
      },
    },
  },
};

/** Where datasets live: RETROMAE_DATA, else ~/.cache/retromae/datasets. */
export function defaultDataDir(): string {
  return process.env.RETROMAE_DATA ?? path.join(os.homedir(), ".cache", "retromae", "datasets");
}

function parseJsonl(text: string, file: string, each: (obj: Record<string, unknown>, line: number) => void): void {
  const lines = text.split("\n");
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line);
    } catch {
      throw new Error(`${file} line ${i + 1} is not valid JSON; the file is damaged; fetch or import the dataset again.`);
    }
    each(obj, i + 1);
  });
}

/** Parse the three BEIR files given their text. */
export function parseBeir(name: string, files: { corpus: string; queries: string; qrels: string }, where = name): BeirDataset {
  const corpus = new Map<string, BeirDoc>();
  parseJsonl(files.corpus, `${where}/corpus.jsonl`, (o, line) => {
    if (typeof o._id !== "string" || typeof o.text !== "string") throw new Error(`${where}/corpus.jsonl line ${line} lacks "_id" or "text".`);
    corpus.set(o._id, { title: typeof o.title === "string" ? o.title : "", text: o.text });
  });
  const queries = new Map<string, string>();
  parseJsonl(files.queries, `${where}/queries.jsonl`, (o, line) => {
    if (typeof o._id !== "string" || typeof o.text !== "string") throw new Error(`${where}/queries.jsonl line ${line} lacks "_id" or "text".`);
    queries.set(o._id, o.text);
  });
  const qrels = new Map<string, Map<string, number>>();
  const rows = files.qrels.split("\n");
  rows.forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    const parts = line.split("\t");
    if (i === 0 && parts[0] === "query-id") return; // header
    if (parts.length < 3 || !Number.isFinite(Number(parts[2]))) {
      throw new Error(`${where} qrels line ${i + 1} is not "query-id<TAB>corpus-id<TAB>score".`);
    }
    const [qid, did, score] = parts;
    if (!qrels.has(qid)) qrels.set(qid, new Map());
    qrels.get(qid)!.set(did, Number(score));
  });
  return { name, corpus, queries, qrels };
}

/** Load from a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) or BEIR's zip. */
export function loadBeir(location: string, split = "test"): BeirDataset {
  if (!fs.existsSync(location)) {
    throw new Error(`Dataset "${location}" does not exist; run \`retromae data fetch scifact\` or pass the folder holding corpus.jsonl.`);
  }
  if (location.endsWith(".zip")) {
    const entries = unzipSync(new Uint8Array(fs.readFileSync(location)));
    const find = (suffix: string) => {
      const key = Object.keys(entries).find((k) => k === suffix || k.endsWith(`/${suffix}`));
      if (!key) throw new Error(`${location} has no ${suffix}; it is not a BEIR dataset zip.`);
      return Buffer.from(entries[key]).toString("utf8");
    };
    const name = path.basename(location, ".zip");
    return parseBeir(name, { corpus: find("corpus.jsonl"), queries: find("queries.jsonl"), qrels: find(`qrels/${split}.tsv`) }, location);
  }
  const read = (rel: string) => {
    const f = path.join(location, rel);
    if (!fs.existsSync(f)) throw new Error(`Dataset folder "${location}" has no ${rel}; it is not a BEIR dataset (or lacks the ${split} split).`);
    return fs.readFileSync(f, "utf8");
  };
  return parseBeir(path.basename(path.resolve(location)), { corpus: read("corpus.jsonl"), queries: read("queries.jsonl"), qrels: read(`qrels/${split}.tsv`) }, location);
}


/** Unpack a BEIR zip (files under NAME/) into `dir`, refusing entries that escape it. */
function unpackZip(zip: Buffer, name: string, dir: string, source: string): void {
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipSync(new Uint8Array(zip));
  } catch {
    throw new Error(`${source} is not a readable zip file; fetch or import the dataset again.`);
  }
  for (const [entry, data] of Object.entries(entries)) {
    if (entry.endsWith("/")) continue;
    const rel = entry.startsWith(`${name}/`) ? entry.slice(name.length + 1) : entry;
    const target = path.join(dir, rel);
    if (!target.startsWith(dir + path.sep)) throw new Error(`${source} has an entry "${entry}" outside its folder; refusing to unpack it.`);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, data);
  }
}

export interface FetchOptions {
  dir?: string;
  /** Override the download address (tests use a server on 127.0.0.1). */
  url?: string;
  /** Override the expected checksums (with url, for tests and mirrors). */
  sha256?: string;
  md5?: string;
  log?: (line: string) => void;
}

/**
 * Download a known BEIR dataset's zip over HTTP(S), check its checksum, and
 * unpack it atomically into DIR/NAME. A failed check leaves nothing behind.
 */
export async function fetchDataset(name: string, options: FetchOptions = {}): Promise<string> {
  const known = KNOWN_DATASETS[name];
  if (!known && !options.url) throw new Error(`Unknown dataset "${name}"; known: ${Object.keys(KNOWN_DATASETS).join(", ")} (or pass a url).`);
  const url = options.url ?? known.url;
  const sha256 = options.sha256 ?? (options.url ? undefined : known?.zipSha256);
  const md5 = options.md5 ?? (options.url ? undefined : known?.zipMd5);
  if (!sha256 && !md5) throw new Error(`No checksum is known for ${url}; pass sha256 so the download can be checked.`);
  const dir = options.dir ?? defaultDataDir();
  fs.mkdirSync(dir, { recursive: true });
  const log = options.log ?? (() => undefined);
  const tmpZip = path.join(dir, `.${name}.zip.part-${process.pid}`);
  const tmpDir = path.join(dir, `.${name}.tmp-${process.pid}`);
  try {
    log(`downloading ${url}`);
    let res: Response;
    try {
      res = await fetch(url);
    } catch (err) {
      throw new Error(`Cannot download ${url} (${(err as Error).cause ?? (err as Error).message}); check the network, or import an offline copy with --from PATH.`);
    }
    if (!res.ok) throw new Error(`Download of ${url} failed with HTTP ${res.status}; check the address, or import an offline copy with --from PATH.`);
    fs.writeFileSync(tmpZip, Buffer.from(await res.arrayBuffer()));
    if (sha256) {
      const got = hashFile(tmpZip, "sha256");
      if (got !== sha256) throw new Error(`The download of ${name} is corrupt: its sha256 is ${got}, expected ${sha256}; nothing was installed, try again.`);
    } else if (md5) {
      const got = hashFile(tmpZip, "md5");
      if (got !== md5) throw new Error(`The download of ${name} is corrupt: its md5 is ${got}, expected ${md5}; nothing was installed, try again.`);
    }
    unpackZip(fs.readFileSync(tmpZip), name, tmpDir, url);
    loadBeir(tmpDir); // must parse before it is installed
    const final = path.join(dir, name);
    replaceDirAtomic(tmpDir, final);
    log(`installed ${final}`);
    return final;
  } finally {
    fs.rmSync(tmpZip, { force: true });
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}

const DATA_FILES = ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "qrels/train.tsv", "qrels/dev.tsv"];

/**
 * Import an offline copy (a folder or BEIR's zip) into DIR/NAME. The files
 * must match one known variant's sha256 sums unless `verify` is false.
 * Returns the folder and the variant matched.
 */
export function importDataset(name: string, from: string, options: { dir?: string; verify?: boolean } = {}): { path: string; variant: string | null } {
  const known = KNOWN_DATASETS[name];
  const dir = options.dir ?? defaultDataDir();
  if (!fs.existsSync(from)) throw new Error(`Offline copy "${from}" does not exist; pass the folder holding corpus.jsonl.`);
  fs.mkdirSync(dir, { recursive: true });
  const tmpDir = path.join(dir, `.${name}.tmp-${process.pid}`);
  try {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    if (from.endsWith(".zip")) {
      unpackZip(fs.readFileSync(from), name, tmpDir, from);
    } else {
      for (const rel of DATA_FILES) {
        const src = path.join(from, rel);
        if (!fs.existsSync(src)) continue;
        fs.mkdirSync(path.dirname(path.join(tmpDir, rel)), { recursive: true });
        fs.copyFileSync(src, path.join(tmpDir, rel));
      }
    }
    let variant: string | null = null;
    if (options.verify !== false) {
      if (!known) throw new Error(`No checksums are known for dataset "${name}"; pass --no-verify to import it unchecked.`);
      const mismatches: string[] = [];
      for (const [vname, sums] of Object.entries(known.variants)) {
        const bad = Object.entries(sums).filter(([rel, sum]) => !fs.existsSync(path.join(tmpDir, rel)) || hashFile(path.join(tmpDir, rel), "sha256") !== sum);
        if (bad.length === 0) {
          variant = vname;
          break;
        }
        mismatches.push(`${vname}: ${bad.map(([rel]) => rel).join(", ")}`);
      }
      if (!variant) {
        throw new Error(`The copy at "${from}" matches no known variant of ${name} (differs in ${mismatches.join("; ")}); pass --no-verify to import it anyway.`);
      }
    }
    loadBeir(tmpDir);
    const final = path.join(dir, name);
    replaceDirAtomic(tmpDir, final);
    return { path: final, variant };
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}

export interface ResolveOptions extends FetchOptions {
  /** The shared data folder to look in second. Default: RETROMAE_SHARED_DATA, else ../shared/data beside the package. */
  shared?: string;
  /** Allow the download when the dataset is nowhere on disk. Default true. */
  download?: boolean;
}

/**
 * A dataset's folder, found or fetched, in this order:
 * 1. DIR/NAME, where DIR is `dir`, RETROMAE_DATA or the cache (~/.cache/retromae/datasets);
 * 2. the shared data folder's beir-NAME (CI and this project's machines);
 * 3. a download from BEIR's host, checked against its checksum and unpacked
 *    atomically into DIR/NAME (fetchDataset).
 * Offline and missing, it fails with one sentence that names the fix.
 */
export async function resolveDataset(name: string, options: ResolveOptions = {}): Promise<string> {
  const dir = options.dir ?? defaultDataDir();
  const cached = path.join(dir, name);
  if (fs.existsSync(path.join(cached, "corpus.jsonl"))) return cached;
  const shared = options.shared ?? process.env.RETROMAE_SHARED_DATA ?? path.join(PACKAGE_ROOT, "..", "shared", "data");
  const inShared = path.join(shared, `beir-${name}`);
  if (fs.existsSync(path.join(inShared, "corpus.jsonl"))) return inShared;
  if (options.download === false) {
    throw new Error(`Dataset "${name}" is neither in ${dir} nor in ${shared}; run \`retromae data fetch ${name}\` with a network, or \`retromae data fetch ${name} --from PATH\` with an offline copy.`);
  }
  try {
    return await fetchDataset(name, { ...options, dir });
  } catch (err) {
    throw new Error(`Dataset "${name}" is neither in ${dir} nor in ${shared}, and fetching it failed: ${(err as Error).message}`);
  }
}
