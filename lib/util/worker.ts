/**
 * Starting a worker thread from this package's own modules, from source
 * (ts-node, as the tests and `npm run` scripts run) or from the build.
 */
import * as path from "path";
import { Worker, WorkerOptions } from "worker_threads";
import { PACKAGE_ROOT } from "./files";

/**
 * A worker running `module` (a path without its extension, e.g.
 * `path.join(__dirname, "collate-worker")`): its .ts file through ts-node
 * where the caller itself runs from source (`fromSource`: its __filename ends
 * in .ts), else its .js file.
 */
export function startModuleWorker(module: string, fromSource: boolean, options: WorkerOptions = {}): Worker {
  return new Worker(`${module}${fromSource ? ".ts" : ".js"}`, {
    ...options,
    execArgv: fromSource ? ["-r", require.resolve("ts-node/register/transpile-only")] : [],
    // From source, ts-node must compile with this package's tsconfig, wherever the notebook (the cwd) is.
    env: fromSource ? { ...process.env, TS_NODE_PROJECT: path.join(PACKAGE_ROOT, "tsconfig.json") } : process.env,
  });
}
