/**
 * `npm run bench`: every scenario, each against a floor measured in the same
 * run (this machine is shared and noisy, so only ratios mean anything).
 * Run through the harness, which provides the emulators and services.
 *
 *   npm run bench                 all scenarios
 *   npm run bench -- coldstart    only the named ones
 *
 * A scenario that fails prints its error after the rows it had measured; the
 * others still run, and the exit code is 1.
 */
import { allowancesBench } from "./allowances";
import { coldStart } from "./coldstart";
import { creditsBench } from "./credits";
import { embeddingsBench } from "./embeddings";
import { jobsBench } from "./jobs";
import { paymentsBench } from "./payments";
import { printRows, type Row } from "./stats";
import { ttlBench } from "./ttl";

/** Each scenario pushes its rows into `rows` (all at the end, or as it measures them, like credits). */
const SCENARIOS: Record<string, (rows: Row[]) => unknown> = {
  coldstart: (rows) => rows.push(...coldStart()),
  credits: (rows) => creditsBench(rows),
  allowances: async (rows) => rows.push(...(await allowancesBench())),
  embeddings: async (rows) => rows.push(...(await embeddingsBench())),
  ttl: async (rows) => rows.push(...(await ttlBench())),
  jobs: async (rows) => rows.push(...(await jobsBench())),
  payments: (rows) => paymentsBench(rows),
};

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((name) => !(name in SCENARIOS));
  if (unknown.length > 0)
    throw new Error(`unknown scenario(s) ${unknown.join(", ")}; known: ${Object.keys(SCENARIOS).join(", ")}`);
  const rows: Row[] = [];
  const failed: string[] = [];
  for (const [name, run] of Object.entries(SCENARIOS)) {
    if (wanted.length > 0 && !wanted.includes(name)) continue;
    process.stdout.write(`[bench] ${name}…\n`);
    // A scenario that fails (e.g. a callable timing out on a busy machine) keeps the rows it measured, prints
    // its error, and the run goes on: one bad scenario must not cost the others' figures.
    try {
      await run(rows);
    } catch (error) {
      failed.push(name);
      process.stderr.write(
        `[bench] ${name} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
    }
  }
  process.stdout.write("\n");
  printRows(rows);
  const missed = rows.filter((row) => row.pass === false);
  if (missed.length > 0)
    process.stdout.write(
      `\n${missed.length} target(s) missed: ${missed.map((row) => `${row.scenario}/${row.name}`).join(", ")}\n`,
    );
  if (failed.length > 0) {
    process.stdout.write(`\n${failed.length} scenario(s) failed: ${failed.join(", ")} (errors above)\n`);
    process.exitCode = 1;
  }
}

// Exits once printed: scenarios leave clients open (the Redis gateway's connection), which would keep the
// process, and the harness waiting on it, alive.
main().then(
  () => process.exit(),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
