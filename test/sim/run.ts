/**
 * The scheduler: for one seed, set up a small world, then step: pick an
 * operation (or a race of two) by weight among those whose precondition
 * holds, run it, turn its writes into owed deliveries, check every invariant.
 * A violation ends the seed with its seed, step and recent step log.
 */
import { checkAll, observe } from "./invariants";
import { OPERATIONS, type Operation, type Planned } from "./operations";
import { DAY, World, type StepRecord } from "./world";

export interface SeedResult {
  seed: number;
  steps: number;
  failure?: { step: number; op: string; violations: string[]; log: StepRecord[] };
}

const RACE_WEIGHT = 4;
const IGNORED = (process.env.SIM_IGNORE ?? "").split(",").filter((part) => part.length > 0);
const USERS = 4;
const SOURCES = 2;
const PROVIDERS = 2;

/** Runs `steps` steps of `seed` (stops early at the first violation). */
export async function runSeed(seed: number, steps: number, runNonce: string): Promise<SeedResult> {
  const w = new World(seed, runNonce);
  try {
    await w.reset();
    await setUp(w);
    const enabled = swarm(w);
    for (let step = 1; step <= steps; step += 1) {
      const record = await runStep(w, step, enabled);
      w.log.push(record);
      if (process.env.SIM_VERBOSE === "1")
        process.stdout.write(`      #${record.step} ${record.op} ${record.detail} → ${record.outcome}\n`);
      await observe(w);
      // While hunting, violations already understood can be set aside (SIM_IGNORE), so the seed goes on to find others.
      const violations = (await checkAll(w)).filter((violation) => !IGNORED.some((part) => violation.includes(part)));
      if (violations.length > 0)
        return { seed, steps: step, failure: { step, op: record.op, violations, log: recentLog(w) } };
    }
    return { seed, steps };
  } finally {
    await w.close();
  }
}

/** The last 30 steps, and the seed's swarm (its first record) when that scrolled out. */
function recentLog(w: World): StepRecord[] {
  const recent = w.log.slice(-30);
  return w.log[0]?.op === "swarm" && recent[0] !== w.log[0] ? [w.log[0], ...recent] : recent;
}

async function setUp(w: World): Promise<void> {
  for (let index = 0; index < USERS; index += 1)
    w.users.push({ uid: `u${index}x${w.nonce}`, everDeleted: false, deleted: false, spendKeys: [] });
  for (let index = 0; index < SOURCES; index += 1)
    w.sources.push({
      id: `src${index}x${w.nonce}`,
      newestApplied: -1,
      deletedAt: 0,
      newestAppliedGeneration: 0,
      deletedGeneration: 0,
    });
  for (let index = 0; index < PROVIDERS; index += 1) {
    const name = `prov${index}x${w.nonce}`;
    w.providers.push({ name, ok: true });
    await w.db
      .collection("model_quotas")
      .doc(`${name}_${name}-model`)
      .set({
        provider: name,
        model_id: `${name}-model`,
        tokens_used: 0,
        tokens_limit: 100_000,
        reset_at: new Date(w.clock.now().getTime() + DAY),
        period_ms: DAY,
      });
  }
}

/**
 * Swarm testing (Groce et al., 2012): each seed runs with a random half of the operations switched off,
 * so some seeds repeat a few operations often enough to reach deep sequences (a provider down, its alert
 * acknowledged, 91 days on, retention) that a seed drawing from every operation rarely strings together.
 * Chosen from the seed, so a replay runs the same set. SIM_SWARM=0 turns it off.
 */
/**
 * Never switched off: without credits little happens, and in every deployment time passes and the schedules
 * (sweeper, retention) run; the deep sequences swarm testing is for mostly end in one of them.
 */
const ALWAYS_ON = new Set(["grant", "advanceClock", "sweep", "retention"]);

function swarm(w: World): ReadonlySet<string> {
  const all = OPERATIONS.map((operation) => operation.name);
  if (process.env.SIM_SWARM === "0") return new Set(all);
  const enabled = new Set(all.filter((name) => ALWAYS_ON.has(name) || w.rng.int(0, 1) === 1));
  w.log.push({
    step: 0,
    op: "swarm",
    detail: [...enabled].join(" "),
    outcome: `${enabled.size} of ${all.length} operations`,
  });
  return enabled;
}

async function runStep(w: World, step: number, enabled: ReadonlySet<string>): Promise<StepRecord> {
  const ready = OPERATIONS.filter((operation) => enabled.has(operation.name) && operation.when(w));
  const racy = ready.filter((operation) => operation.racy !== false);
  const choice = w.rng.weighted([...ready.map((operation) => operation.weight), racy.length >= 2 ? RACE_WEIGHT : 0]);
  if (choice < ready.length) {
    const operation = ready[choice];
    const planned = operation.plan(w);
    return { step, op: operation.name, detail: planned.detail, outcome: await planned.run() };
  }
  // A race: two operations planned in order, then started together and awaited together.
  const first = pick(w, racy);
  const firstPlan = first.plan(w);
  const others = racy.filter((operation) => operation.when(w));
  if (others.length === 0) return { step, op: first.name, detail: firstPlan.detail, outcome: await firstPlan.run() };
  const second = pick(w, others);
  const secondPlan: Planned = second.plan(w);
  const [a, b] = await Promise.all([firstPlan.run(), secondPlan.run()]);
  return {
    step,
    op: `race(${first.name}, ${second.name})`,
    detail: `${firstPlan.detail} ‖ ${secondPlan.detail}`,
    outcome: `${a} ‖ ${b}`,
  };
}

function pick(w: World, operations: Operation[]): Operation {
  return operations[w.rng.weighted(operations.map((operation) => operation.weight))];
}

/** The failure as the developer needs it: how to replay, what broke, what led there. */
export function describeFailure(result: SeedResult): string {
  const failure = result.failure;
  if (!failure) return `SIM_SEED=${result.seed}: ${result.steps} steps, no violation`;
  return [
    `SIM_SEED=${result.seed} failed at step ${failure.step} (${failure.op}):`,
    ...failure.violations.map((violation) => `  ✗ ${violation}`),
    `last ${failure.log.length} steps:`,
    ...failure.log.map((record) => `  #${record.step} ${record.op} ${record.detail} → ${record.outcome}`),
    `replay: SIM_SEED=${result.seed} SIM_STEPS=${failure.step} npm run sim`,
  ].join("\n");
}
