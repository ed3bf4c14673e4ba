#!/usr/bin/env node
// Checks that every relative link in the repository's Markdown files resolves: the file exists and, for
// `file.md#anchor` or `#anchor`, the heading does (GitHub's anchor rules). Prints each broken link and exits 1.
//   node scripts/check-doc-links.mjs
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SKIP = new Set(["node_modules", ".git", ".harness", "lib"]);

function markdownFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    if (SKIP.has(name)) return [];
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return markdownFiles(full);
    return name.toLowerCase().endsWith(".md") ? [full] : [];
  });
}

/** Text outside fenced code blocks, where links are links. */
function prose(text) {
  return text.replace(/^```[\s\S]*?^```/gm, "");
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchorsOf(file) {
  const seen = new Map();
  const anchors = new Set();
  for (const [, heading] of prose(readFileSync(file, "utf8")).matchAll(/^#{1,6}\s+(.+?)\s*#*$/gm)) {
    const base = heading
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

const broken = [];
let checked = 0;
for (const file of markdownFiles(root)) {
  const text = prose(readFileSync(file, "utf8"));
  for (const [, target] of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, mailto: …
    checked += 1;
    const [pathPart, anchor] = target.split("#", 2);
    const resolved = pathPart ? path.resolve(path.dirname(file), decodeURIComponent(pathPart)) : file;
    const where = `${path.relative(root, file)}: ${target}`;
    if (!existsSync(resolved)) broken.push(`${where} (no such file)`);
    else if (anchor && resolved.endsWith(".md") && !anchorsOf(resolved).has(anchor))
      broken.push(`${where} (no such heading)`);
  }
}
for (const line of broken) process.stdout.write(`broken link: ${line}\n`);
process.stdout.write(`${checked} relative links checked, ${broken.length} broken\n`);
process.exit(broken.length > 0 ? 1 : 0);
