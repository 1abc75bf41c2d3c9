// Vendors the Jupyter widgets HTML embed manager (@jupyter-widgets/html-manager,
// dist/embed.js: @jupyter-widgets/base 6, controls 5 and output, self-contained)
// into runner/assets as one gzip file with its licence, so HTML reports render
// saved widgets offline. Its npm dependencies (JupyterLab's rendermime, lumino, ...)
// are not installed: only the built file is needed. Run again to change version:
//   node scripts/vendor-widgets-embed.js 1.0.15
const { execFileSync } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");
const zlib = require("zlib");

const version = process.argv[2] || "1.0.15";
const work = fs.mkdtempSync(path.join(os.tmpdir(), "html-manager-"));
execFileSync("npm", ["pack", `@jupyter-widgets/html-manager@${version}`], { cwd: work, stdio: "ignore" });
const tgz = fs.readdirSync(work).find((f) => f.endsWith(".tgz"));
execFileSync("tar", ["xzf", tgz], { cwd: work });
const pkg = path.join(work, "package");
const embed = fs.readFileSync(path.join(pkg, "dist", "embed.js"));
const out = path.join(__dirname, "..", "runner", "assets");
fs.mkdirSync(out, { recursive: true });
for (const f of fs.readdirSync(out)) if (f.startsWith("html-manager-")) fs.rmSync(path.join(out, f));
fs.writeFileSync(path.join(out, `html-manager-${version}.embed.js.gz`), zlib.gzipSync(embed, { level: 9 }));
const meta = JSON.parse(fs.readFileSync(path.join(pkg, "package.json"), "utf8"));
const licence = ["LICENSE", "LICENSE.txt", "LICENSE.md"].map((f) => path.join(pkg, f)).find((f) => fs.existsSync(f));
const bundled = ["embed.js.LICENSE.txt"].map((f) => path.join(pkg, "dist", f)).filter((f) => fs.existsSync(f));
fs.writeFileSync(
  path.join(out, `html-manager-${version}.LICENSE.txt`),
  [`${meta.name} ${meta.version}, licence ${meta.license} (${meta.repository?.url ?? meta.homepage ?? ""}); dist/embed.js bundles the packages named below.\n`, licence ? fs.readFileSync(licence, "utf8") : "", ...bundled.map((f) => fs.readFileSync(f, "utf8"))].join("\n"),
);
fs.rmSync(work, { recursive: true, force: true });
console.log(`runner/assets/html-manager-${version}.embed.js.gz: ${embed.length} bytes, ${zlib.gzipSync(embed, { level: 9 }).length} gzipped`);
