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

export async function seedDemo(env: Record<string, string>, step: (text: string) => void): Promise<void> {
  Object.assign(process.env, env);
  const functionsSrc = path.join(ROOT, "functions", "src");
  const { firestore } = (await import(
    path.join(functionsSrc, "adapters", "firebase")
  )) as typeof import("../../functions/src/adapters/firebase");
  const { grantCredits } = (await import(
    path.join(functionsSrc, "credits", "operations")
  )) as typeof import("../../functions/src/credits/operations");
  const db = firestore();
  const granted = await grantCredits({ db }, DEMO_ADMIN, {
    user_id: DEMO_USER,
    amount: 500,
    type: "grant",
    reason: "demo credits",
    idempotency_key: "demo-seed-grant",
  });
  await db.collection("users").doc(DEMO_USER).set({ email: "demo@example.com", tier: "free" }, { merge: true });
  step(`demo: ${DEMO_USER} has ${granted.balance} credits (ledger version ${granted.version})`);
  // Provider configuration and the provider stand-in for providerHealthCheck and the router.
  await seedScheduledDemo(env, step);

  const userToken = emulatorIdToken(PROJECT_ID, DEMO_USER);
  const base = env.FUNCTIONS_BASE_URL;
  process.stdout.write(
    [
      "",
      "Sample calls (tokens are Auth-emulator tokens for the demo user, valid 1 h):",
      `  curl -s -X POST ${base}/getBalance -H 'content-type: application/json' \\`,
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
