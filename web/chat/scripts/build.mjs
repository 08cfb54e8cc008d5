// Builds the web chat into dist/ (or the directory given as the first
// argument): app.js (the app and the SDK from source, bundled and minified),
// app.css and index.html. Deterministic, so CI can rebuild and compare with
// the committed dist/ that the server embeds (src/webchat.rs).
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join, resolve } from "node:path";

const here = fileURLToPath(new URL("..", import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "dist"));
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, "src/main.ts")],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  legalComments: "none",
  outfile: join(out, "app.js"),
  alias: { "@roomcast/client": join(here, "../sdk/src/index.ts") },
  logLevel: "warning",
});
await build({
  entryPoints: [join(here, "src/app.css")],
  bundle: true,
  minify: true,
  outfile: join(out, "app.css"),
  logLevel: "warning",
});
copyFileSync(join(here, "src/index.html"), join(out, "index.html"));
