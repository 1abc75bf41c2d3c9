/**
 * The `retromae` command line. Modules load per command, so `retromae kernel`
 * starts without loading TensorFlow.js.
 */

const USAGE = `usage: retromae <command> [options]

commands:
  kernel CONNECTION_FILE                 run the Jupyter kernel (Jupyter starts this through kernel.json)
  kernel install [--user | --sys-prefix | --prefix P] [--name N]
                                         write the kernelspec "RetroMAE (TypeScript)" (default --user)
  kernel uninstall [--user | --sys-prefix | --prefix P] [--name N]
  kernel list                            where the kernel is installed
  export-torchrun RUN_DIR [--nproc N] [--flavour retromae|flagembedding] [--data-dir D] [--output-dir O]
                  [--epochs E] [--keep-per-device]
                                         print the torchrun command that continues RUN_DIR's pre-training with an
                                         official PyTorch trainer (staoxiao/RetroMAE or FlagEmbedding), from its config
                                         and latest checkpoint, keeping its global batch unless --keep-per-device
  run NOTEBOOK.ipynb [--out OUT.ipynb] [--html OUT.html] [--timeout S] [-p name=value ...] [--kernel NAME]
                                         run a notebook headless (no Python needed); writes the executed notebook
                                         (default NOTEBOOK.out.ipynb) and optionally an HTML report
  bundle [--out FILE]                    one archive (tar.xz) that runs on a Linux x86-64 GPU node with no network and
                                         no Node.js: the runtime, the package, its dependencies, the Vulkan loader
  bench NAME [options]                   a benchmark (npm run bench -- NAME), e.g. bench gpu
  info [--backend NAME]                  choose a backend (auto, tensorflow, webgpu, native, wasm, cpu) and print what was chosen and why
  doctor [--json]                        what the GPU backends need: webgpu (Vulkan loader, ICD files, adapters and
                                         their limits) and tensorflow (libtensorflow, CUDA 11.2, cuDNN 8.1,
                                         a supported GPU) and what this machine has
  tokenize TEXT [--vocab PATH] [--max-length N]
                                         show the WordPiece tokens and ids of TEXT (bert-base-uncased by default)
  data fetch NAME [--dir D] [--from PATH] [--no-verify]
                                         download a BEIR dataset (checksummed, unpacked atomically) into D
                                         (default $RETROMAE_DATA or ~/.cache/retromae/datasets), or import an
                                         offline copy with --from, checked against known sha256 sums
`;

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith("--")) throw new Error(`Option --${name} needs a value.`);
  args.splice(i, 2);
  return v;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  switch (command) {
    case "kernel":
      return kernelCommand(args);
    case "run":
      return runCommand(args);
    case "export-torchrun": {
      const { torchrunExport } = await import("../lib/train/torchrun");
      const nproc = option(args, "nproc");
      const epochs = option(args, "epochs");
      const flavour = option(args, "flavour");
      const out = torchrunExport(args[0] ?? "", {
        nprocPerNode: nproc === undefined ? undefined : Number(nproc),
        flavour: flavour as "retromae" | "flagembedding" | undefined,
        dataDir: option(args, "data-dir"),
        outputDir: option(args, "output-dir"),
        epochs: epochs === undefined ? undefined : Number(epochs),
        keepPerDevice: args.includes("--keep-per-device"),
      });
      for (const n of out.notes) console.log(`# ${n}`);
      for (const w of out.warnings) console.error(`warning: ${w}`);
      if (out.preprocess) console.log(`# Prepare the data (from the repository root):\n${out.preprocess}`);
      console.log(`# Then, from ${flavour === "flagembedding" ? "any folder" : "src/"}:`);
      console.log(out.command);
      return 0;
    }
    case "doctor": {
      const { doctor, readMachine } = await import("../lib/engine/doctor");
      const { webgpuDoctor } = await import("../lib/engine/webgpu/doctor");
      const machine = readMachine();
      const d = doctor(machine);
      const w = await webgpuDoctor(machine);
      if (args.includes("--json")) {
        console.log(JSON.stringify({ ...d, webgpu: w }, null, 2));
        return 0;
      }
      const section = (title: string, x: { checks: typeof d.checks; summary: string }) => {
        console.log(`== ${title}`);
        for (const c of x.checks) {
          console.log(`${c.ok ? "ok  " : "MISS"} ${c.name}: ${c.found}`);
          if (!c.ok || c.fix) console.log(`     needs ${c.needed}${c.fix ? `; ${c.fix}` : ""}`);
        }
        console.log(x.summary);
      };
      section("tensorflow (tfjs-node-gpu: CUDA 11.2, cuDNN 8.1)", d);
      section("webgpu (Dawn: Vulkan, Metal or D3D12)", w);
      return 0;
    }
    case "bundle": {
      const { bundle } = await import("./bundle");
      const path = await import("path");
      const r = bundle(option(args, "out"), (line) => console.error(line));
      console.log(`wrote ${r.file}: ${(r.bytes / 2 ** 20).toFixed(1)} MB (${(r.unpackedBytes / 2 ** 20).toFixed(0)} MB unpacked). On the node: tar -xJf ${path.basename(r.file)} && retromae/bin/retromae doctor`);
      return 0;
    }
    case "bench": {
      // the benchmarks are TypeScript run through ts-node (bench/), as npm run bench runs them
      const path = await import("path");
      const { spawnSync } = await import("child_process");
      const { PACKAGE_ROOT } = await import("../lib/util/files");
      const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(PACKAGE_ROOT, "bench", "index.ts"), ...args], { stdio: "inherit", cwd: PACKAGE_ROOT });
      return r.status ?? 1;
    }
    case "info": {
      const { backend } = await import("../lib");
      const choice = await backend.use(option(args, "backend") ?? "auto");
      for (const s of choice.skipped) console.error(`skipped ${s.backend}: ${s.reason}`);
      console.log(JSON.stringify(backend.info(), null, 2));
      return 0;
    }
    case "tokenize": {
      const { BertTokenizer } = await import("../lib");
      const vocab = option(args, "vocab");
      const maxLength = option(args, "max-length");
      if (args.length === 0) throw new Error("tokenize needs the text to tokenize, e.g. retromae tokenize \"Hello, world!\".");
      const tok = vocab ? BertTokenizer.fromFile(vocab) : BertTokenizer.bertBaseUncased();
      const enc = tok.encode(args.join(" "), { maxLength: maxLength ? Number(maxLength) : undefined });
      console.log(JSON.stringify({ tokens: enc.inputIds.map((i) => tok.vocab.token(i)), ids: enc.inputIds }));
      return 0;
    }
    case "data": {
      const [sub, name] = args;
      if (sub !== "fetch" || !name) throw new Error("usage: retromae data fetch NAME [--dir D] [--from PATH] [--no-verify]");
      const { defaultDataDir, fetchDataset, importDataset } = await import("../lib");
      const dir = option(args, "dir") ?? defaultDataDir();
      const from = option(args, "from");
      const noVerify = args.includes("--no-verify");
      if (from) {
        const r = importDataset(name, from, { dir, verify: !noVerify });
        console.log(`imported ${name} into ${r.path}${r.variant ? ` (matches known variant ${r.variant})` : " (not verified)"}`);
      } else {
        const where = await fetchDataset(name, { dir, log: (l) => console.error(l) });
        console.log(`fetched ${name} into ${where}`);
      }
      return 0;
    }
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`Unknown command "${command}".\n${USAGE}`);
      return 2;
  }
}

async function runCommand(args: string[]): Promise<number> {
  const { runNotebook } = await import("../runner/runner");
  const out = option(args, "out");
  const html = option(args, "html");
  const timeout = option(args, "timeout");
  const kernel = option(args, "kernel");
  const parameters: Record<string, string> = {};
  for (let i = args.indexOf("-p"); i >= 0; i = args.indexOf("-p")) {
    const kv = args[i + 1];
    const eq = kv?.indexOf("=") ?? -1;
    if (!kv || eq <= 0) throw new Error(`-p needs name=value, got ${kv === undefined ? "nothing" : JSON.stringify(kv)}.`);
    parameters[kv.slice(0, eq)] = kv.slice(eq + 1);
    args.splice(i, 2);
  }
  const unknown = args.filter((a) => a.startsWith("-"));
  if (unknown.length) throw new Error(`Unknown option ${unknown[0]} for run; see retromae help.`);
  if (args.length !== 1) throw new Error("run needs one notebook: retromae run NOTEBOOK.ipynb [--out OUT.ipynb] [--html OUT.html] [--timeout S] [-p name=value ...].");
  const timeoutS = timeout === undefined ? undefined : Number(timeout);
  if (timeoutS !== undefined && !(timeoutS > 0)) throw new Error(`--timeout must be a positive number of seconds, got ${timeout}.`);
  const r = await runNotebook(args[0], {
    out,
    html,
    timeoutS,
    kernel,
    parameters,
    log: (l) => process.stderr.write(`${l}\n`),
    echo: (t) => process.stdout.write(t),
    report: (t) => process.stderr.write(t),
    tty: process.stderr.isTTY === true,
  });
  process.stderr.write(`wrote ${r.out}${r.html ? ` and ${r.html}` : ""}\n`);
  if (r.error) {
    process.stderr.write(`${r.error}\n`);
    return 1;
  }
  return 0;
}

async function kernelCommand(args: string[]): Promise<number> {
  const [sub] = args;
  if (sub === "install" || sub === "uninstall") {
    const { install, uninstall, DEFAULT_NAME } = await import("../kernel/install");
    const name = option(args, "name") ?? DEFAULT_NAME;
    const prefix = option(args, "prefix");
    const where = { user: args.includes("--user"), sysPrefix: args.includes("--sys-prefix"), prefix };
    const unknown = args.slice(1).filter((a) => a !== "--user" && a !== "--sys-prefix");
    if (unknown.length) throw new Error(`Unknown option ${unknown[0]} for kernel ${sub}; use --user, --sys-prefix, --prefix P or --name N.`);
    if (sub === "install") console.log(`Installed kernelspec ${name} in ${install(where, name)}`);
    else console.log(`Removed ${uninstall(where, name)}`);
    return 0;
  }
  if (sub === "list") {
    const { list } = await import("../kernel/install");
    const found = list();
    if (!found.length) console.log("The RetroMAE kernel is not installed; run: npx retromae kernel install --user");
    for (const k of found) console.log(`${k.name.padEnd(20)} ${k.dir}`);
    return 0;
  }
  const { runKernel } = await import("../kernel/main");
  await runKernel(sub);
  return -1; // keeps running
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: Error) => {
    console.error(`retromae: ${err.message}`);
    process.exit(1);
  },
);
