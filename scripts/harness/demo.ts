/**
 * Demo data for `npm start`: a user with credits (granted through the ledger,
 * so every invariant holds), an administrator, and a sample call to try.
 */
import path from "node:path";
import { seedScheduledDemo } from "./demo-scheduled";
import { emulatorIdToken } from "./tokens";
import { PROJECT_ID, ROOT } from "./services";

export const DEMO_USER = "demo-user";
export const DEMO_ADMIN = "demo-admin";

/** Packs the demo sells (config/credit_packs); amounts in cents. */
const DEMO_PACKS = [
  { pack_id: "starter", credits: 100, amount: 500, currency: "usd" },
  { pack_id: "pro", credits: 1200, amount: 5000, currency: "usd", expires_after_days: 365 },
];

/**
 * A Stripe Checkout session for the demo user, made through createCheckoutSession: opening its URL on the Stripe
 * stand-in pays it, and the stand-in delivers the signed events to stripeWebhook, which grants the pack.
 */
async function printDemoCheckout(base: string, token: string, step: (text: string) => void): Promise<void> {
  try {
    const response = await fetch(`${base}/createCheckoutSession`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({
        data: {
          pack_id: "starter",
          idempotency_key: "demo-checkout",
          success_url: "http://localhost/paid",
          cancel_url: "http://localhost/cancelled",
        },
      }),
      signal: AbortSignal.timeout(180_000),
    });
    const body = (await response.json()) as { result?: { url: string }; error?: { message: string } };
    if (!body.result) throw new Error(body.error?.message ?? `HTTP ${response.status}`);
    step(
      `demo: buy 100 credits for ${DEMO_USER} (the Stripe stand-in pays, the webhook grants them once):\n` +
        `  curl -s ${body.result.url}`,
    );
  } catch (error) {
    step(`demo: no checkout session for ${DEMO_USER}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

export async function seedDemo(env: Record<string, string>, step: (text: string) => void): Promise<void> {
  Object.assign(process.env, env);
  const functionsSrc = path.join(ROOT, "functions", "src");
  const { firestore } = (await import(
    path.join(functionsSrc, "adapters", "firebase")
  )) as typeof import("../../functions/src/adapters/firebase");
  const { grantCredits } = (await import(
    path.join(functionsSrc, "credits", "operations")
  )) as typeof import("../../functions/src/credits/operations");
  const { setPlan } = (await import(
    path.join(functionsSrc, "credits", "plans")
  )) as typeof import("../../functions/src/credits/plans");
  const db = firestore();
  // Three lots, one of each kind the burn order tells apart: a purchase (burns last, never expires), a promo
  // expiring in three days, and the free plan's allowance for this month (burns first).
  await grantCredits({ db }, DEMO_ADMIN, {
    user_id: DEMO_USER,
    amount: 400,
    type: "purchase",
    reason: "demo purchase",
    idempotency_key: "demo-seed-purchase",
  });
  await grantCredits({ db }, DEMO_ADMIN, {
    user_id: DEMO_USER,
    amount: 50,
    type: "grant",
    source: "promo",
    expires_at: new Date(Date.now() + 3 * 86_400_000).toISOString(),
    reason: "demo promo",
    idempotency_key: "demo-seed-promo",
  });
  await db.collection("users").doc(DEMO_USER).set({ email: "demo@example.com" }, { merge: true });
  await setPlan({ db }, DEMO_ADMIN, { user_id: DEMO_USER, tier: "free", idempotency_key: "demo-seed-plan" });
  const account = (await db.collection("users").doc(DEMO_USER).get()).data() ?? {};
  step(
    `demo: ${DEMO_USER} has ${String(account.credits_balance)} credits in three lots: the free plan's allowance, a promo expiring in 3 days, a purchase (ledger version ${String(account.ledger_version)})`,
  );
  // Provider configuration and the provider stand-in for providerHealthCheck and the router.
  await seedScheduledDemo(env, step);

  await db.collection("config").doc("credit_packs").set({ packs: DEMO_PACKS });
  step(`demo: config/credit_packs sells ${DEMO_PACKS.map((pack) => pack.pack_id).join(", ")}`);

  const userToken = emulatorIdToken(PROJECT_ID, DEMO_USER);
  const base = env.FUNCTIONS_BASE_URL;
  // Not awaited: the callable's first (cold) call takes a while, and nothing else waits for it.
  void printDemoCheckout(base, userToken, step);
  process.stdout.write(
    [
      "",
      "Sample calls (tokens are Auth-emulator tokens for the demo user, valid 1 h):",
      `  curl -s -X POST ${base}/getBalance -H 'content-type: application/json' \\`,
      `    -H 'authorization: Bearer ${userToken}' -d '{"data":{}}'`,
      `  curl -s -X POST ${base}/listLots -H 'content-type: application/json' \\`,
      `    -H 'authorization: Bearer ${userToken}' -d '{"data":{}}'`,
      `  curl -s -X POST ${base}/spendCredits -H 'content-type: application/json' \\`,
      `    -H 'authorization: Bearer ${userToken}' \\`,
      `    -d '{"data":{"feature":"chat.message","quantity":3,"idempotency_key":"try-1"}}'`,
      `  curl -s -X POST ${base}/meterUsage -H 'content-type: application/json' -H 'authorization: Bearer ${env.METERING_API_KEY}' \\`,
      `    -d '{"user_id":"${DEMO_USER}","feature":"tts.1k_chars","quantity":2,"idempotency_key":"meter-1"}'`,
      `Environment for scripts against this suite (e.g. npm run backfill:mirrors): see ${path.join(ROOT, ".harness", "env")}`,
      "",
    ].join("\n"),
  );
}
