/**
 * The `retromae` command line.
 *
 *   retromae info [--backend auto|tensorflow|wasm|cpu]   backend choice, versions, threads/SIMD (JSON)
 *   retromae tokenize TEXT [--vocab PATH] [--max-length N]  WordPiece tokens and ids
 */
import { backend, BertTokenizer, defaultDataDir, fetchDataset, importDataset } from "../lib";

const USAGE = `usage: retromae <command> [options]

commands:
  info [--backend NAME]                  choose a backend (auto, tensorflow, wasm, cpu) and print what was chosen and why
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
    case "info": {
      const choice = await backend.use(option(args, "backend") ?? "auto");
      for (const s of choice.skipped) console.error(`skipped ${s.backend}: ${s.reason}`);
      console.log(JSON.stringify(backend.info(), null, 2));
      return 0;
    }
    case "tokenize": {
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

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`retromae: ${err.message}`);
    process.exit(1);
  },
);
