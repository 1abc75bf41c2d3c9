import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "fs";
import * as path from "path";

const root = path.resolve(__dirname, "..");
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const lock = JSON.parse(fs.readFileSync(path.join(root, "package-lock.json"), "utf8"));

/**
 * Each dependency that ships an install script, and why it may run it. npm 12
 * runs a dependency's install script only where package.json's allowScripts
 * says true (npm 11.16 on only warns), and installs the package without it
 * otherwise.
 */
const DECISIONS: Record<string, { allow: boolean; why: string }> = {
  "@tensorflow/tfjs-node-gpu": { allow: true, why: "downloads libtensorflow (the tensorflow route); offline it fails and npm drops the optional package, where blocked it would sit there without its addon" },
  webgpu: { allow: true, why: "on macOS, clears the quarantine flag from dawn.node; nothing elsewhere" },
  zeromq: { allow: true, why: "builds the addon from source where none of its prebuilt ones loads" },
  esbuild: { allow: true, why: "checks its platform binary and fetches it if the optional package is missing (dev only)" },
  "core-js": { allow: false, why: "prints a funding banner" },
  "@fortawesome/fontawesome-free": { allow: false, why: "prints an attribution banner (dev only)" },
};

/** The name in a lockfile key: "node_modules/a/node_modules/@s/b" -> "@s/b". */
function nameOf(key: string): string {
  return key.slice(key.lastIndexOf("node_modules/") + "node_modules/".length);
}

test("every dependency in the lockfile that has an install script has a decision in package.json's allowScripts, each named as npm matches it, and no decision names anything else", () => {
  const withScripts = new Set(
    Object.entries(lock.packages as Record<string, { hasInstallScript?: boolean }>)
      .filter(([key, p]) => key !== "" && p.hasInstallScript)
      .map(([key]) => nameOf(key)),
  );
  assert.ok(withScripts.has("zeromq") && withScripts.has("@tensorflow/tfjs-node-gpu"), "the lockfile lists the packages that have install scripts");
  const allow = pkg.allowScripts as Record<string, boolean>;
  assert.equal(Object.keys(allow).sort(), [...withScripts].sort(), "allowScripts covers exactly the dependencies that have install scripts");
  assert.equal(Object.keys(DECISIONS).sort(), [...withScripts].sort(), "each has its reason here");
  for (const [name, { allow: want }] of Object.entries(DECISIONS)) assert.is(allow[name], want, `${name}: ${want ? "allowed" : "denied"}`);
  // name-only keys: npm matches a pinned "name@version" through the lockfile's resolved URL, which an
  // install with omit-lockfile-registry-resolved (as here) does not write, so a pinned approval would not match
  for (const key of Object.keys(allow)) assert.not.match(key, /.@/, `${key} is name-only`);
});

test("the dependencies whose install scripts run are pinned to one version in package.json", () => {
  const deps = { ...pkg.dependencies, ...pkg.optionalDependencies, ...pkg.devDependencies } as Record<string, string>;
  for (const [name, { allow }] of Object.entries(DECISIONS)) {
    if (!allow || !(name in deps)) continue;
    assert.match(deps[name], /^\d+\.\d+\.\d+$/, `${name} is pinned (${deps[name]})`);
  }
});

test.run();
