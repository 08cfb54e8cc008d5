// Fails if the committed dist/ (embedded in the server binary) differs from
// a fresh build of the sources: run `npm run build -w chat` and commit.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL("..", import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), "roomcast-chat-"));
try {
  execFileSync(process.execPath, [join(here, "scripts/build.mjs"), tmp], { stdio: "inherit" });
  const committed = join(here, "dist");
  const fresh = readdirSync(tmp).sort();
  const have = readdirSync(committed).sort();
  let stale = JSON.stringify(fresh) !== JSON.stringify(have);
  for (const f of fresh) {
    if (stale) break;
    stale = !readFileSync(join(tmp, f)).equals(readFileSync(join(committed, f)));
    if (stale) console.error(`web/chat/dist/${f} differs from a fresh build`);
  }
  if (stale) {
    console.error(
      "web/chat/dist is not up to date: run `npm run build -w chat` in web/ and commit it",
    );
    process.exit(1);
  }
  console.log(`web/chat/dist is up to date (${fresh.join(", ")})`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
