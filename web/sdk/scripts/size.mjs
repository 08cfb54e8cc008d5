// The size of the core as apps ship it: src/index.ts bundled with its one
// dependency (@msgpack/msgpack), minified, then gzipped. Fails above the
// budget (15 KB), so CI catches growth.
import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";

const BUDGET = 15 * 1024;
const entry = fileURLToPath(new URL("../src/index.ts", import.meta.url));
const out = await build({
  entryPoints: [entry],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  write: false,
});
const bytes = out.outputFiles[0].contents;
const gz = gzipSync(bytes, { level: 9 }).length;
console.log(
  `@roomcast/client core: ${bytes.length} B minified, ${gz} B min+gz (budget ${BUDGET} B)`,
);
if (gz > BUDGET) {
  console.error("over the bundle size budget");
  process.exit(1);
}
