/**
 * `npm run bench`: every scenario, each against a floor measured in the same
 * run (this machine is shared and noisy, so only ratios mean anything).
 * Run through the harness, which provides the emulators and services.
 *
 *   npm run bench                 all scenarios
 *   npm run bench -- coldstart    only the named ones
 */
import { coldStart } from "./coldstart";
import { creditsBench } from "./credits";
import { embeddingsBench } from "./embeddings";
import { jobsBench } from "./jobs";
import { printRows, type Row } from "./stats";
import { ttlBench } from "./ttl";

const SCENARIOS: Record<string, () => Promise<Row[]> | Row[]> = {
  coldstart: () => coldStart(),
  credits: () => creditsBench(),
  embeddings: () => embeddingsBench(),
  ttl: () => ttlBench(),
  jobs: () => jobsBench(),
};

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((name) => !(name in SCENARIOS));
  if (unknown.length > 0)
    throw new Error(`unknown scenario(s) ${unknown.join(", ")}; known: ${Object.keys(SCENARIOS).join(", ")}`);
  const rows: Row[] = [];
  for (const [name, run] of Object.entries(SCENARIOS)) {
    if (wanted.length > 0 && !wanted.includes(name)) continue;
    process.stdout.write(`[bench] ${name}…\n`);
    rows.push(...(await run()));
  }
  process.stdout.write("\n");
  printRows(rows);
  const missed = rows.filter((row) => row.pass === false);
  if (missed.length > 0)
    process.stdout.write(
      `\n${missed.length} target(s) missed: ${missed.map((row) => `${row.scenario}/${row.name}`).join(", ")}\n`,
    );
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
