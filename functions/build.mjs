// Builds the deployed module: functions/src → functions/lib/index.js (one CommonJS file and its source map).
//
// Why a bundle: zod 4's public entries re-export every locale, so `require("zod")` parses ~95 files where a
// callable uses a handful (~75–110 ms of each cold start). Bundled from zod's ESM build and tree-shaken, only
// the schema classes in use and the English messages remain. Every other package stays external: it is
// installed from package.json on deploy, and loading it stays lazy where the source makes it lazy.
//
// The per-domain lazy loading of index.ts survives bundling: a module reached only through `require()` or
// `import()` is wrapped by esbuild and runs on first call, so `getBalance` still loads credits and nothing
// else (`npm run bench -- coldstart` lists the heavy SDKs each function loads).
//
// Types are checked separately (`tsc --noEmit`, the first half of `npm run build`); esbuild only strips them.
import { build } from "esbuild";
import { rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const dir = path.dirname(fileURLToPath(import.meta.url));
/** Packages compiled into the bundle; every other bare import is left to `require()` at run time. */
const BUNDLED = new Set(["zod"]);

/** Marks every package import external except those in BUNDLED (and their subpaths). */
const externalPackages = {
  name: "external-packages",
  setup(builder) {
    builder.onResolve({ filter: /^[^./]/ }, (args) => {
      const name = args.path.startsWith("@") ? args.path.split("/").slice(0, 2).join("/") : args.path.split("/")[0];
      return BUNDLED.has(name) ? undefined : { path: args.path, external: true };
    });
  },
};

rmSync(path.join(dir, "lib"), { recursive: true, force: true });
const result = await build({
  entryPoints: [path.join(dir, "src", "index.ts")],
  outfile: path.join(dir, "lib", "index.js"),
  bundle: true,
  platform: "node",
  format: "cjs",
  // Node 20 is the oldest runtime package.json admits; firebase.json deploys nodejs22.
  target: "node20",
  sourcemap: true,
  plugins: [externalPackages],
  logLevel: "warning",
  metafile: true,
});
const bytes = Object.values(result.metafile.outputs).find((output) => output.entryPoint)?.bytes ?? 0;
process.stdout.write(`functions/lib/index.js: ${(bytes / 1024).toFixed(0)} KB\n`);
