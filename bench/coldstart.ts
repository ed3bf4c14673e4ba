/**
 * Cold start: the time to load the deployed module in a fresh Node process the
 * way Cloud Functions does (FUNCTION_TARGET set, then exports[target] read),
 * against a floor measured in the same run: a process that loads only
 * firebase-functions and firebase-admin/app.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { median, type Row } from "./stats";

const FUNCTIONS_DIR = path.resolve(__dirname, "..", "functions");
const HEAVY = [
  "@google-cloud/firestore",
  "@google-cloud/pubsub",
  "@lancedb/lancedb",
  "mongodb",
  "ioredis",
  "@grpc/grpc-js",
  "firebase-admin/lib/database",
];

/** Runs inside the child: load, measure, list heavy SDKs present in require.cache. */
const PROBE = `
const start = process.hrtime.bigint();
const target = process.env.FUNCTION_TARGET;
if (target) { const fn = require(process.env.LIB)[target]; if (typeof fn !== "function") throw new Error("no function " + target); }
else { require("firebase-functions"); require("firebase-admin/app"); }
const ms = Number(process.hrtime.bigint() - start) / 1e6;
const heavy = JSON.parse(process.env.HEAVY).filter((name) => Object.keys(require.cache).some((file) => file.includes("/node_modules/" + name + "/")));
process.stdout.write(JSON.stringify({ ms, heavy }));
`;

function sample(target: string | undefined): { ms: number; heavy: string[] } {
  const result = spawnSync(process.execPath, ["-e", PROBE], {
    cwd: FUNCTIONS_DIR,
    env: {
      PATH: process.env.PATH,
      LIB: path.join(FUNCTIONS_DIR, "lib", "index.js"),
      HEAVY: JSON.stringify(HEAVY),
      ...(target ? { FUNCTION_TARGET: target, K_SERVICE: target } : {}),
      GCLOUD_PROJECT: "demo-bench",
    },
    encoding: "utf8",
  });
  if (result.status !== 0) throw new Error(`cold start of ${target ?? "floor"} failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as { ms: number; heavy: string[] };
}

export function coldStart(rounds = 7): Row[] {
  const names = Object.keys(require(path.join(FUNCTIONS_DIR, "lib", "index.js")) as object);
  const floorRuns: number[] = [];
  const runs = new Map<string, { ms: number[]; heavy: string[] }>(names.map((name) => [name, { ms: [], heavy: [] }]));
  // Interleave floor and functions so machine noise hits both alike.
  for (let round = 0; round < rounds; round++) {
    floorRuns.push(sample(undefined).ms);
    for (const name of names) {
      const { ms, heavy } = sample(name);
      const entry = runs.get(name)!;
      entry.ms.push(ms);
      entry.heavy = heavy;
    }
  }
  const floor = median(floorRuns);
  const rows: Row[] = [
    {
      scenario: "cold start",
      name: "floor (firebase-functions + firebase-admin/app)",
      value: floor,
      unit: "ms",
      ratio: 1,
    },
  ];
  for (const [name, { ms, heavy }] of runs) {
    const value = median(ms);
    const ratio = value / floor;
    const needsHeavy = heavy.length > 0;
    rows.push({
      scenario: "cold start",
      name,
      value,
      unit: "ms",
      ratio,
      target: needsHeavy ? undefined : "≤ 1.25×",
      pass: needsHeavy ? undefined : ratio <= 1.25,
      note: needsHeavy ? `loads ${heavy.join(", ")}` : "no heavy SDK at load",
    });
  }
  return rows;
}
