/**
 * Hugging Face Hub downloads with huggingface_hub's URL layout and cache:
 *   GET {endpoint}/{repo}/resolve/{revision}/{file}
 *   {cache}/models--{org}--{name}/blobs/{etag}
 *   {cache}/models--{org}--{name}/snapshots/{commit}/{file} -> ../../blobs/{etag}
 *   {cache}/models--{org}--{name}/refs/{revision}             (the commit)
 * The cache is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub;
 * the endpoint is $HF_ENDPOINT, else https://huggingface.co; $HF_TOKEN is sent
 * when set; $HF_HUB_OFFLINE=1 uses the cache only.
 * A download goes to blobs/{etag}.incomplete and is resumed with a Range
 * request next time; it becomes the blob only when its size (and its sha256,
 * for LFS files, whose etag is that hash) match. A partial file is never used.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { hashFile, writeFileAtomic } from "../util/files";

export interface HubOptions {
  revision?: string;
  /** Defaults to $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Defaults to $HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Defaults to $HF_TOKEN. */
  token?: string;
  /** Use only what is cached (also $HF_HUB_OFFLINE=1). */
  localFilesOnly?: boolean;
  log?: (line: string) => void;
}

/**
 * What a RetroMAE/BERT checkpoint needs: config.json, the weights in the
 * first format the repository has (model.safetensors, a sharded safetensors
 * index, pytorch_model.bin, a sharded .bin index; the index's shards follow
 * it), and vocab.txt if it is there (the default vocabulary is used without it).
 */
export const CHECKPOINT_FILES = { config: "config.json", weights: ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"], optional: ["vocab.txt"] } as const;

/** The shard files a sharded checkpoint's index (*.index.json) names; one sentence when it is not an index. */
export function shardsOf(indexFile: string): string[] {
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(fs.readFileSync(indexFile, "utf8"));
  } catch {
    throw new HubError(`${indexFile} is not valid JSON; restore it (or delete it from the cache and download again).`);
  }
  if (!index.weight_map || typeof index.weight_map !== "object") throw new HubError(`${indexFile} has no weight_map; it is not a sharded checkpoint's index.`);
  return [...new Set(Object.values(index.weight_map))];
}

export function hubCacheDir(): string {
  if (process.env.HF_HUB_CACHE) return process.env.HF_HUB_CACHE;
  const home = process.env.HF_HOME ?? path.join(os.homedir(), ".cache", "huggingface");
  return path.join(home, "hub");
}

function repoFolder(cache: string, repo: string): string {
  return path.join(cache, `models--${repo.replace(/\//g, "--")}`);
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/;

class HubError extends Error {}

async function request(url: string, init: RequestInit, endpoint: string): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    const cause = (err as Error & { cause?: { code?: string; message?: string } }).cause;
    throw new HubError(`Cannot reach ${endpoint} (${cause?.code ?? cause?.message ?? (err as Error).message}); check the network or HF_ENDPOINT, or pass a local folder.`);
  }
}


/** Stream a response body onto the end of a file. */
async function appendBody(res: Response, file: string): Promise<void> {
  const fd = fs.openSync(file, "a");
  try {
    const reader = res.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      fs.writeSync(fd, value);
    }
  } finally {
    fs.closeSync(fd);
  }
}

interface Remote {
  commit: string;
  etag: string;
  size: number | null;
  /** LFS files: the etag is the content's sha256. */
  sha256: string | null;
}

async function describe(url: string, headers: Record<string, string>, endpoint: string, repo: string, file: string): Promise<Remote | null> {
  const res = await request(url, { method: "HEAD", headers, redirect: "manual" }, endpoint);
  if (res.status === 404) return null;
  if (res.status === 401 || res.status === 403)
    throw new HubError(`${repo} on ${endpoint} needs access (HTTP ${res.status}); accept its terms on the Hub and set HF_TOKEN.`);
  if (!(res.ok || (res.status >= 300 && res.status < 400))) throw new HubError(`Asking ${endpoint} for ${repo}/${file} failed with HTTP ${res.status}.`);
  const h = res.headers;
  const etag = (h.get("x-linked-etag") ?? h.get("etag") ?? "").replace(/^W\//, "").replace(/"/g, "");
  const commit = h.get("x-repo-commit") ?? "";
  if (!etag || !commit) throw new HubError(`${endpoint} did not answer like the Hugging Face Hub for ${repo}/${file} (no ETag or X-Repo-Commit); check HF_ENDPOINT.`);
  const size = Number(h.get("x-linked-size") ?? h.get("content-length") ?? NaN);
  return { commit, etag, size: Number.isFinite(size) ? size : null, sha256: /^[0-9a-f]{64}$/.test(etag) ? etag : null };
}

/** Download one blob into the cache, resuming a partial download when the server allows it. */
async function fetchBlob(url: string, headers: Record<string, string>, remote: Remote, blob: string, endpoint: string, log: (l: string) => void): Promise<void> {
  const partial = `${blob}.incomplete`;
  for (let attempt = 0; attempt < 2; attempt++) {
    const have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
    const res = await request(url, { headers: have > 0 ? { ...headers, Range: `bytes=${have}-` } : headers }, endpoint);
    if (res.status === 416) {
      fs.rmSync(partial, { force: true }); // the partial is as long as the file, or longer: start over
      continue;
    }
    if (!res.ok) throw new HubError(`Downloading ${url} failed with HTTP ${res.status}.`);
    if (res.status === 206) log(`resuming ${path.basename(url)} at ${have} bytes`);
    else fs.rmSync(partial, { force: true }); // a full answer: the partial is discarded
    await appendBody(res, partial);
    const size = fs.statSync(partial).size;
    const badSize = remote.size !== null && size !== remote.size;
    const badHash = !badSize && remote.sha256 !== null && hashFile(partial) !== remote.sha256;
    if (!badSize && !badHash) {
      fs.renameSync(partial, blob);
      return;
    }
    log(`discarding a ${badSize ? `${size}-byte download (expected ${remote.size})` : "download whose sha256 does not match"}`);
    fs.rmSync(partial, { force: true });
  }
  throw new HubError(`The download of ${url} kept arriving incomplete or corrupt; nothing was cached, try again.`);
}

/**
 * The local folder of `repo` at `revision`, downloading what is missing.
 * A path to an existing folder is returned as it is (offline use).
 */
export async function hubSnapshot(repoOrPath: string, options: HubOptions = {}): Promise<string> {
  if (fs.existsSync(repoOrPath) && fs.statSync(repoOrPath).isDirectory()) return path.resolve(repoOrPath);
  if (!REPO_ID.test(repoOrPath)) throw new Error(`"${repoOrPath}" is neither a folder nor a Hub repo id like "org/name".`);
  const repo = repoOrPath;
  const revision = options.revision ?? "main";
  const cache = options.cacheDir ?? hubCacheDir();
  const endpoint = (options.endpoint ?? process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
  const token = options.token ?? process.env.HF_TOKEN;
  const offline = options.localFilesOnly ?? process.env.HF_HUB_OFFLINE === "1";
  const log = options.log ?? (() => undefined);
  const folder = repoFolder(cache, repo);
  const refFile = path.join(folder, "refs", revision);

  if (offline) {
    const commit = /^[0-9a-f]{40}$/.test(revision) ? revision : fs.existsSync(refFile) ? fs.readFileSync(refFile, "utf8").trim() : null;
    const snap = commit && path.join(folder, "snapshots", commit);
    const has = (f: string) => !!snap && fs.existsSync(path.join(snap, f));
    const weights = CHECKPOINT_FILES.weights.find(has);
    if (!snap || !has(CHECKPOINT_FILES.config) || !weights || (weights.endsWith(".index.json") && !shardsOf(path.join(snap, weights)).every(has)))
      throw new Error(`${repo}@${revision} is not in the cache ${cache}, and downloads are off (HF_HUB_OFFLINE / localFilesOnly); download it once with a network, or pass a local folder.`);
    return snap;
  }

  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  let snapshot: string | null = null;
  /** Download one file of the repo into the cache's snapshot; false when the repo has no such file. */
  const fetchFile = async (name: string): Promise<boolean> => {
    const url = `${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${name}`;
    const remote = await describe(url, headers, endpoint, repo, name);
    if (!remote) return false;
    snapshot = path.join(folder, "snapshots", remote.commit);
    const blob = path.join(folder, "blobs", remote.etag);
    const link = path.join(snapshot, name);
    fs.mkdirSync(path.dirname(blob), { recursive: true });
    fs.mkdirSync(snapshot, { recursive: true });
    if (!fs.existsSync(blob)) {
      log(`downloading ${repo}/${name}${remote.size !== null ? ` (${(remote.size / 1e6).toFixed(1)} MB)` : ""}`);
      await fetchBlob(url, headers, remote, blob, endpoint, log);
    }
    if (!fs.existsSync(link)) {
      const tmp = `${link}.tmp-${process.pid}`;
      fs.rmSync(tmp, { force: true });
      fs.symlinkSync(path.relative(snapshot, blob), tmp);
      fs.renameSync(tmp, link);
    }
    if (!/^[0-9a-f]{40}$/.test(revision)) {
      fs.mkdirSync(path.dirname(refFile), { recursive: true });
      writeFileAtomic(refFile, remote.commit);
    }
    return true;
  };
  const missing = (what: string) => new HubError(`${repo}@${revision} on ${endpoint} has no ${what}; check the repo id and revision.`);
  try {
    if (!(await fetchFile(CHECKPOINT_FILES.config))) throw missing(CHECKPOINT_FILES.config);
    let weights: string | undefined;
    for (const w of CHECKPOINT_FILES.weights) {
      if (await fetchFile(w)) {
        weights = w;
        break;
      }
    }
    if (!weights) throw missing(`weights (none of ${CHECKPOINT_FILES.weights.join(", ")})`);
    if (weights.endsWith(".index.json")) {
      for (const shard of shardsOf(path.join(snapshot!, weights))) if (!(await fetchFile(shard))) throw missing(`${shard}, a shard its ${weights} lists`);
    }
    for (const f of CHECKPOINT_FILES.optional) await fetchFile(f);
  } catch (err) {
    if (err instanceof HubError) throw new Error(err.message);
    throw err;
  }
  return snapshot!;
}
