/**
 * Checks, against a running `npm start`, what its demo promises (issue 12): the demo user's credits are three
 * lots, visible through `listLots` in burn order — the free plan's allowance for this month, a promo expiring
 * within three days, and a purchase that never expires — and `getBalance` counts them.
 *
 *   tsx scripts/check-demo.ts        (scripts/check-ctrl-c.sh runs it once the suite is ready)
 *
 * The suite writes `.harness/env` once it is ready and seeds the demo after that, so both are waited for (the
 * lots up to CHECK_DEMO_DEADLINE_MS, default 180 s: the callables' first calls start their workers).
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { callFunction } from "../test/support/suite";
import { DEMO_USER } from "./harness/demo";
import { waitFor } from "./harness/net";
import { STATE_DIR } from "./harness/services";

const DAY_MS = 86_400_000;

interface Lot {
  source: string;
  remaining: number;
  expires_at: string | null;
  status: string;
}

/** The running suite's environment, from the file it writes once ready (undefined until then). */
function suiteEnv(): Record<string, string> | undefined {
  const file = path.join(STATE_DIR, "env");
  if (!existsSync(file)) return undefined;
  const pairs = [...readFileSync(file, "utf8").matchAll(/^export (\w+)='(.*)'$/gm)];
  return Object.fromEntries(pairs.map(([, key, value]) => [key, value.replace(/'\\''/g, "'")]));
}

/** A callable as the demo user; throws with its error. */
async function call<T>(name: string): Promise<T> {
  const { result, error, status } = await callFunction<T>(name, {}, { uid: DEMO_USER });
  if (!result) throw new Error(`${name}: ${error?.status ?? status} ${error?.message ?? ""}`);
  return result;
}

/** What is wrong with the demo user's lots, or null when they are as promised. */
function problemWith(lots: Lot[], now: number): string | null {
  const sources = lots.map((lot) => lot.source);
  if (sources.join() !== "allowance,promo,purchase")
    return `active lots in burn order are ${sources.join(", ") || "none"}, not allowance, promo, purchase`;
  const [allowance, promo, purchase] = lots;
  // The end of the month the demo was seeded in: this month's, or, seeded just before a month ended and not yet
  // expired by the hourly pass, the start of this one.
  const expires = allowance.expires_at === null ? Number.NaN : Date.parse(allowance.expires_at);
  const today = new Date(now);
  const monthStart = (months: number) => Date.UTC(today.getUTCFullYear(), today.getUTCMonth() + months, 1);
  if (expires !== monthStart(1) && expires !== monthStart(0))
    return `the allowance expires at ${allowance.expires_at}, not at the end of the month it was granted in`;
  const promoLeft = promo.expires_at === null ? Infinity : Date.parse(promo.expires_at) - now;
  if (!(promoLeft > 0 && promoLeft <= 3 * DAY_MS)) return `the promo expires at ${promo.expires_at}, not within 3 days`;
  if (purchase.expires_at !== null) return `the purchase expires at ${purchase.expires_at}`;
  if (lots.some((lot) => lot.status !== "active" || lot.remaining <= 0)) return "a lot is not active with credits";
  return null;
}

async function main(): Promise<void> {
  const env = await waitFor("the suite's .harness/env", suiteEnv, { timeoutMs: 60_000, intervalMs: 500 });
  Object.assign(process.env, env);
  const lots = await waitFor(
    "the demo's three lots",
    async () => {
      const { items } = await call<{ items: Lot[] }>("listLots");
      const problem = problemWith(items, Date.now());
      if (problem) throw new Error(problem);
      const balance = await call<{ balance: number; lots: { count: number } }>("getBalance");
      const total = items.reduce((sum, lot) => sum + lot.remaining, 0);
      if (balance.lots.count !== 3 || balance.balance !== total)
        throw new Error(`getBalance says ${balance.balance} in ${balance.lots.count} lots, listLots ${total} in 3`);
      return items;
    },
    { timeoutMs: Number(process.env.CHECK_DEMO_DEADLINE_MS ?? 180_000), intervalMs: 1_000 },
  );
  console.log(
    `demo: ${DEMO_USER} has ${lots.map((lot) => `${lot.source} ${lot.remaining}`).join(", ")} (listLots, getBalance)`,
  );
}

main().catch((error: unknown) => {
  console.error(`FAIL: the demo is not as promised: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
