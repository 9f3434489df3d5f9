// Rebuilds web/ui/vendor/editor.js and web/ui/vendor/LICENSES.txt.
// Usage: cd web/ui-src && npm ci && npm run build
import { build } from "esbuild";
import { readFileSync, writeFileSync, existsSync, readdirSync, mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "ui", "vendor");
mkdirSync(out, { recursive: true });

const result = await build({
  entryPoints: [join(here, "editor.js")],
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2020",
  legalComments: "none",
  metafile: true,
  outfile: join(out, "editor.js"),
  banner: { js: "/* Traitor UI vendor bundle: CodeMirror 6 + acorn. Licences and versions: LICENSES.txt. Rebuild: web/ui-src (npm ci && npm run build). */" },
});

// Every package that contributed code to the bundle, with its version and licence text.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) packages.set(m[1], join(here, "node_modules", m[1]));
}
const sections = [];
for (const [name, dir] of [...packages].sort(([a], [b]) => a.localeCompare(b))) {
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
  const text = file ? readFileSync(join(dir, file), "utf8").trim() : `License: ${pkg.license}`;
  sections.push(`${"=".repeat(72)}\n${name} ${pkg.version} (${pkg.license})\n${"=".repeat(72)}\n\n${text}\n`);
}
writeFileSync(
  join(out, "LICENSES.txt"),
  "Third-party code bundled in editor.js (built by web/ui-src/build.mjs with esbuild).\n\n" +
    sections.join("\n"),
);
const size = readFileSync(join(out, "editor.js")).length;
console.log(`editor.js: ${(size / 1024).toFixed(0)} KiB from ${packages.size} packages`);
