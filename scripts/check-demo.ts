/**
 * Checks, against a running `npm start`, what its demo promises (issue 12): the demo user's credits are three
 * lots, visible through `listLots` in burn order — the free plan's allowance for this month, a promo expiring
 * within three days, and a purchase that never expires — and `getBalance` counts them.
 *
 *   tsx scripts/check-demo.ts        (scripts/check-ctrl-c.sh runs it once the suite is ready)
 *
 * The suite writes `.harness/env` once it is ready and seeds the demo after that, so both are waited for, up to
 * CHECK_DEMO_DEADLINE_MS (default 180 s: the callables' first calls start their workers).
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { DEMO_USER } from "./harness/demo";
import { PROJECT_ID, STATE_DIR } from "./harness/services";
import { emulatorIdToken } from "./harness/tokens";

const deadline = Date.now() + Number(process.env.CHECK_DEMO_DEADLINE_MS ?? 180_000);
const DAY_MS = 86_400_000;

interface Lot {
  source: string;
  remaining: number;
  priority: number;
  expires_at: string | null;
  status: string;
}

function suiteEnv(): Record<string, string> | null {
  const file = path.join(STATE_DIR, "env");
  if (!existsSync(file)) return null;
  const pairs = [...readFileSync(file, "utf8").matchAll(/^export (\w+)='(.*)'$/gm)];
  return Object.fromEntries(pairs.map(([, key, value]) => [key, value.replace(/'\\''/g, "'")]));
}

async function call<T>(base: string, name: string, data: object): Promise<T> {
  const response = await fetch(`${base}/${name}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${emulatorIdToken(PROJECT_ID, DEMO_USER)}` },
    body: JSON.stringify({ data }),
    signal: AbortSignal.timeout(Math.max(1_000, deadline - Date.now())),
  });
  const body = (await response.json()) as { result?: T; error?: { status: string; message: string } };
  if (!body.result) throw new Error(`${name}: ${body.error?.status ?? response.status} ${body.error?.message ?? ""}`);
  return body.result;
}

/** What is wrong with the demo user's lots, or null when they are as promised. */
function problemWith(lots: Lot[], now: number): string | null {
  const sources = lots.map((lot) => lot.source);
  if (sources.join() !== "allowance,promo,purchase")
    return `active lots in burn order are ${sources.join(", ") || "none"}, not allowance, promo, purchase`;
  const [allowance, promo, purchase] = lots;
  const monthEnd = new Date(now);
  const nextMonth = Date.UTC(monthEnd.getUTCFullYear(), monthEnd.getUTCMonth() + 1, 1);
  if (allowance.expires_at === null || Date.parse(allowance.expires_at) !== nextMonth)
    return `the allowance expires at ${allowance.expires_at}, not at the month's end`;
  const promoLeft = promo.expires_at === null ? Infinity : Date.parse(promo.expires_at) - now;
  if (!(promoLeft > 0 && promoLeft <= 3 * DAY_MS)) return `the promo expires at ${promo.expires_at}, not within 3 days`;
  if (purchase.expires_at !== null) return `the purchase expires at ${purchase.expires_at}`;
  if (lots.some((lot) => lot.status !== "active" || lot.remaining <= 0)) return "a lot is not active with credits";
  return null;
}

async function main(): Promise<void> {
  let last = "the suite's .harness/env never appeared";
  while (Date.now() < deadline) {
    const env = suiteEnv();
    if (env?.FUNCTIONS_BASE_URL) {
      try {
        const { items } = await call<{ items: Lot[] }>(env.FUNCTIONS_BASE_URL, "listLots", {});
        const problem = problemWith(items, Date.now());
        if (problem === null) {
          const balance = await call<{ balance: number; lots: { count: number } }>(
            env.FUNCTIONS_BASE_URL,
            "getBalance",
            {},
          );
          const total = items.reduce((sum, lot) => sum + lot.remaining, 0);
          if (balance.lots.count !== 3 || balance.balance !== total) {
            throw new Error(`getBalance says ${balance.balance} in ${balance.lots.count} lots, listLots ${total} in 3`);
          }
          console.log(
            `demo: ${DEMO_USER} has ${items.map((lot) => `${lot.source} ${lot.remaining}`).join(", ")} (listLots, getBalance)`,
          );
          return;
        }
        last = problem;
      } catch (error) {
        last = error instanceof Error ? error.message : String(error);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
  console.error(`FAIL: the demo is not as promised: ${last}`);
  process.exitCode = 1;
}

void main();
