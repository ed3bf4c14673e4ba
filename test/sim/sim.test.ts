/**
 * The seeded simulation (VOPR / Jepsen-bank style) as a test tier.
 *
 *   SIM_SEED=<n>        replay one seed exactly (its choices; Firestore's own contention timing may differ)
 *   SIM_SEEDS=<n>       run n fresh seeds (`npm run sim -- --seeds n`)
 *   SIM_BUDGET_MS=<ms>  otherwise, fresh seeds until the budget is spent (default 120 000)
 *   SIM_STEPS=<n>       steps per seed (default 80)
 *   SIM_HUNT=1          report each seed's first violation and go on with the next seed (to measure how fast each bug is found)
 *   SIM_IGNORE=a,b      set aside violations containing these texts (bugs already known), so seeds run on
 *   SIM_VERBOSE=1       print every step
 */
import { randomBytes } from "node:crypto";
import { describeFailure, runSeed } from "./run";

const budgetMs = Number(process.env.SIM_BUDGET_MS ?? 120_000);
const steps = Number(process.env.SIM_STEPS ?? 80);
const fixedSeed = process.env.SIM_SEED === undefined ? undefined : Number(process.env.SIM_SEED);
const seedCount = process.env.SIM_SEEDS === undefined ? undefined : Number(process.env.SIM_SEEDS);

describe("sim: seeded simulation of the use cases against the emulators, redis-server and LanceDB", function () {
  this.timeout((seedCount ?? 1) * 600_000 + budgetMs + 600_000);

  it("when a seeded scheduler interleaves spends, jobs, reports, retention, queue and trigger deliveries, Redis loss, health checks and embeddings, then every invariant holds after every step", async () => {
    const runNonce = randomBytes(3).toString("hex");
    const base = randomBytes(4).readUInt32BE(0) >>> 1;
    const started = Date.now();
    let totalSteps = 0;
    const found: string[] = [];
    for (let index = 0; ; index += 1) {
      if (fixedSeed !== undefined && index > 0) break;
      if (seedCount !== undefined && index >= seedCount) break;
      if (fixedSeed === undefined && seedCount === undefined && index > 0 && Date.now() - started >= budgetMs) break;
      const seed = fixedSeed ?? (base + index) % 2 ** 31;
      process.stdout.write(`    SIM_SEED=${seed} (${steps} steps)\n`);
      const result = await runSeed(seed, steps, runNonce);
      totalSteps += result.steps;
      if (!result.failure) continue;
      const report = `${describeFailure(result)}\n(seed ${index + 1} of this run, ${totalSteps} steps in all)`;
      if (process.env.SIM_HUNT !== "1") throw new Error(report);
      process.stdout.write(`${report}\n`);
      found.push(
        `seed #${index + 1} SIM_SEED=${seed} step ${result.failure.step}: ${result.failure.violations[0].split("\n")[0]}`,
      );
    }
    process.stdout.write(
      `    ${totalSteps} steps in ${Math.round((Date.now() - started) / 1000)} s, ${found.length} seed(s) with a violation\n${found.map((line) => `      ${line}\n`).join("")}`,
    );
    if (found.length > 0) throw new Error(`violations found:\n${found.join("\n")}`);
  });
});
