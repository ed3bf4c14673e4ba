#!/usr/bin/env node
// Installs what the suite needs and is missing, then builds the functions.
// Plain Node with no dependencies, so it runs on a fresh clone before `npm ci`.
// Safe to run again: each step checks before it acts.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync, statSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const started = Date.now();
const say = (text) => process.stdout.write(`[setup +${((Date.now() - started) / 1000).toFixed(1)}s] ${text}\n`);

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: "inherit", ...options });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed with exit code ${result.status}`);
  }
}

function has(binary) {
  return spawnSync("sh", ["-c", `command -v ${binary}`], { stdio: "ignore" }).status === 0;
}

/**
 * Installs `dir`'s packages from its package-lock.json unless node_modules already matches it.
 * `npm ci` where it works; the functions package uses `npm install` (still pinned by the lock)
 * because @lancedb/lancedb lists platform packages this registry does not serve, which
 * `npm ci` counts as a lock mismatch.
 */
function installPackages(dir, command = "ci") {
  const lock = path.join(dir, "package-lock.json");
  const stamp = path.join(dir, "node_modules", ".setup-lock-hash");
  const hash = createHash("sha256").update(readFileSync(lock)).digest("hex");
  if (existsSync(stamp) && readFileSync(stamp, "utf8") === hash) return;
  say(`installing npm packages in ${path.relative(root, dir) || "."} (npm ${command})`);
  run("npm", [command, "--no-audit", "--no-fund", "--loglevel=error"], {
    cwd: dir,
    // mongodb-memory-server (inside smartmongo) would try to download a mongod; we never use it.
    env: { ...process.env, MONGOMS_DISABLE_POSTINSTALL: "1" },
  });
  writeFileSync(stamp, hash);
}

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs);
  }
  return newest;
}

function ensureRedis() {
  if (has("redis-server")) return;
  if (process.getuid?.() !== 0 || !has("apt-get")) {
    throw new Error("redis-server is missing; install it (Debian/Ubuntu: apt-get install redis-server) and run again");
  }
  say("installing redis-server with apt-get");
  run("apt-get", ["update", "-qq"]);
  run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "redis-server"], {
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
}

function checkJava() {
  if (!has("java")) {
    say("warning: java is missing; firebase-tools needs it for the Firestore and Pub/Sub emulators");
    return;
  }
  const out = spawnSync("java", ["-version"], { encoding: "utf8" });
  const major = Number((/version "(\d+)/.exec(`${out.stderr}${out.stdout}`) ?? [])[1] ?? 0);
  if (major < 11) say(`warning: java ${major} found; the emulators need Java 11 or newer`);
}

try {
  ensureRedis();
  checkJava();
  installPackages(root);
  installPackages(path.join(root, "functions"), "install");
  const lib = path.join(root, "functions", "lib", "index.js");
  const src = path.join(root, "functions", "src");
  if (!existsSync(lib) || newestMtime(src) > statSync(lib).mtimeMs) {
    say("building functions (npm run build: tsc --noEmit, then the esbuild bundle)");
    execFileSync("npm", ["run", "build"], { cwd: path.join(root, "functions"), stdio: "inherit" });
  }
  say("ready");
} catch (error) {
  process.stderr.write(`setup failed: ${error.message}\n`);
  process.exit(1);
}
