/**
 * `retromae kernel install | uninstall | list`: the kernelspec, written without
 * Python, where jupyter_client looks for it (jupyter_core's paths):
 *   --user         $JUPYTER_DATA_DIR, else $XDG_DATA_HOME/jupyter (~/.local/share/jupyter; macOS ~/Library/Jupyter; Windows %APPDATA%\jupyter)
 *   --sys-prefix   $VIRTUAL_ENV or $CONDA_PREFIX, /share/jupyter
 *   --prefix P     P/share/jupyter
 * The default is --user.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { PACKAGE_ROOT, replaceDirAtomic } from "../lib/util";
import { PROTOCOL_VERSION } from "./protocol/wire";

export const DEFAULT_NAME = "retromae";
export const DISPLAY_NAME = "RetroMAE (TypeScript)";

const ROOT = PACKAGE_ROOT;

export interface Where {
  user?: boolean;
  sysPrefix?: boolean;
  prefix?: string;
}

export function userDataDir(): string {
  if (process.env.JUPYTER_DATA_DIR) return process.env.JUPYTER_DATA_DIR;
  if (process.platform === "darwin") return path.join(os.homedir(), "Library", "Jupyter");
  if (process.platform === "win32") return path.join(process.env.APPDATA ?? os.homedir(), "jupyter");
  return path.join(process.env.XDG_DATA_HOME || path.join(os.homedir(), ".local", "share"), "jupyter");
}

export function kernelsDir(where: Where): string {
  const chosen = [where.user, where.sysPrefix, where.prefix !== undefined].filter(Boolean).length;
  if (chosen > 1) throw new Error("Choose one of --user, --sys-prefix and --prefix.");
  if (where.prefix !== undefined) return path.join(path.resolve(where.prefix), "share", "jupyter", "kernels");
  if (where.sysPrefix) {
    const prefix = process.env.VIRTUAL_ENV ?? process.env.CONDA_PREFIX;
    if (!prefix) throw new Error("--sys-prefix needs an active virtualenv or conda environment ($VIRTUAL_ENV or $CONDA_PREFIX); use --user or --prefix instead.");
    return path.join(prefix, "share", "jupyter", "kernels");
  }
  return path.join(userDataDir(), "kernels");
}

/** Every kernels directory jupyter_client searches, in its order. */
export function searchDirs(): string[] {
  const dirs = [path.join(userDataDir(), "kernels")];
  for (const p of (process.env.JUPYTER_PATH ?? "").split(path.delimiter).filter(Boolean)) dirs.push(path.join(p, "kernels"));
  for (const prefix of [process.env.VIRTUAL_ENV, process.env.CONDA_PREFIX]) if (prefix) dirs.push(path.join(prefix, "share", "jupyter", "kernels"));
  dirs.push("/usr/local/share/jupyter/kernels", "/usr/share/jupyter/kernels");
  return [...new Set(dirs)];
}

export function kernelSpec(name = DEFAULT_NAME): Record<string, unknown> {
  return {
    argv: [process.execPath, path.join(ROOT, "bin", "retromae.js"), "kernel", "{connection_file}"],
    display_name: name === DEFAULT_NAME ? DISPLAY_NAME : `${DISPLAY_NAME} [${name}]`,
    language: "typescript",
    interrupt_mode: "message",
    env: {},
    metadata: { debugger: false },
    // The protocol version the kernel speaks, so jupyter_client need not ask (kernelspec field since jupyter_client 7).
    kernel_protocol_version: PROTOCOL_VERSION,
  };
}

function checkName(name: string): void {
  if (!/^[a-z0-9._-]+$/i.test(name)) throw new Error(`Kernel name "${name}" may use only letters, digits, ".", "_" and "-".`);
}

/** Write the kernelspec (kernel.json and logos) atomically: a temporary directory, then a rename. */
export function install(where: Where, name = DEFAULT_NAME): string {
  checkName(name);
  const dir = path.join(kernelsDir(where), name);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = fs.mkdtempSync(path.join(path.dirname(dir), `.${name}-`));
  try {
    fs.writeFileSync(path.join(tmp, "kernel.json"), JSON.stringify(kernelSpec(name), null, 2) + "\n");
    for (const logo of ["logo-32x32.png", "logo-64x64.png", "logo-svg.svg"]) fs.copyFileSync(path.join(ROOT, "kernel", "assets", logo), path.join(tmp, logo));
    replaceDirAtomic(tmp, dir);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return dir;
}

export function uninstall(where: Where, name = DEFAULT_NAME): string {
  checkName(name);
  const dir = path.join(kernelsDir(where), name);
  if (!fs.existsSync(path.join(dir, "kernel.json"))) throw new Error(`No kernel "${name}" is installed in ${path.dirname(dir)}; see retromae kernel list.`);
  fs.rmSync(dir, { recursive: true, force: true });
  return dir;
}

/** Installed kernelspecs that run this package's kernel. */
export function list(): { name: string; dir: string; argv: string[] }[] {
  const found: { name: string; dir: string; argv: string[] }[] = [];
  for (const kernels of searchDirs()) {
    if (!fs.existsSync(kernels)) continue;
    for (const name of fs.readdirSync(kernels)) {
      const file = path.join(kernels, name, "kernel.json");
      try {
        const spec = JSON.parse(fs.readFileSync(file, "utf8"));
        if (Array.isArray(spec.argv) && spec.argv.some((a: string) => /retromae(\.js)?$/.test(String(a)))) found.push({ name, dir: path.dirname(file), argv: spec.argv });
      } catch {
        /* not a kernelspec */
      }
    }
  }
  return found;
}
