/**
 * Test helpers for payments: the credit packs every payments test sells, a
 * client of the harness's Stripe stand-in over HTTP, and signed delivery of
 * its events to the webhook, in any order and as many times as wanted.
 */
import type { Firestore } from "firebase-admin/firestore";
import { startStripeStandin, type StripeEventPayload, type StripeStandin } from "../../scripts/harness/stripe-standin";
import { stripeClient, type StripeClient } from "../../functions/src/payments/stripe-client";
import type { CreditPack } from "../../functions/src/payments/schemas";
import { seededRandom } from "./random";
import { env, suite } from "./suite";

export const TEST_PACKS: CreditPack[] = [
  { pack_id: "starter", credits: 100, amount: 500, currency: "usd" },
  { pack_id: "pro", credits: 1200, amount: 5000, currency: "usd", expires_after_days: 365, priority: 10 },
];

/** Puts the test packs on sale (the same document in every test, so files can run in any order). */
export async function sellTestPacks(db: Firestore): Promise<void> {
  await db.collection("config").doc("credit_packs").set({ packs: TEST_PACKS });
}

/** An in-process stand-in with these keys, a `stripe` client pointed at it, and the test packs on sale. */
export async function openStripeStandin(
  db: Firestore,
  keys: { secretKey: string; webhookSecret: string },
): Promise<{ standin: StripeStandin; stripe: StripeClient }> {
  const standin = await startStripeStandin(keys);
  await sellTestPacks(db);
  return { standin, stripe: stripeClient(keys.secretKey, standin.url) };
}

/** A test's URLs for Checkout to return to. */
export const RETURN_URLS = { success_url: "https://app.example/paid", cancel_url: "https://app.example/cancelled" };

/** The harness's stand-in, for tests in another process than the harness (e2e). */
export const stripeStandin = {
  get url() {
    return env("STRIPE_API_BASE");
  },
  get webhookSecret() {
    return env("STRIPE_WEBHOOK_SECRET");
  },
  async complete(sessionId: string, paymentStatus: "paid" | "unpaid" = "paid"): Promise<StripeEventPayload> {
    return (await standinPost(`checkout/sessions/${sessionId}/complete`, { payment_status: paymentStatus })).event;
  },
  async asyncResult(sessionId: string, result: "succeeded" | "failed"): Promise<StripeEventPayload> {
    return (await standinPost(`checkout/sessions/${sessionId}/async`, { result })).event;
  },
  /** Refunds `amount` (default: the rest) of a paid payment intent: `charge.refunded`, delivered when asked. */
  async refund(paymentIntent: string, amount?: number, deliver = false): Promise<StripeEventPayload> {
    return (await standinPost(`payment_intents/${paymentIntent}/refund`, { amount, deliver })).event;
  },
  /** Opens a dispute whose funds are withdrawn: `charge.dispute.funds_withdrawn`. */
  async dispute(paymentIntent: string, deliver = false): Promise<StripeEventPayload> {
    return (await standinPost(`payment_intents/${paymentIntent}/dispute`, { deliver })).event;
  },
  /** Wins the dispute: `charge.dispute.funds_reinstated`. */
  async reinstate(disputeId: string, deliver = false): Promise<StripeEventPayload> {
    return (await standinPost(`disputes/${disputeId}/reinstate`, { deliver })).event;
  },
  async customers(): Promise<Array<{ id: string; metadata: Record<string, string> }>> {
    const response = await fetch(`${stripeStandin.url}/_standin/customers`, { signal: AbortSignal.timeout(10_000) });
    return (await response.json()) as Array<{ id: string; metadata: Record<string, string> }>;
  },
};

async function standinPost(path: string, body: unknown): Promise<{ event: StripeEventPayload }> {
  const response = await fetch(`${stripeStandin.url}/_standin/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`stand-in ${path}: HTTP ${response.status} ${await response.text()}`);
  return (await response.json()) as { event: StripeEventPayload };
}

/** A copy of `event` that Stripe could have sent for the same session: another event id and type. */
export function sibling(event: StripeEventPayload, type: string, id: string): StripeEventPayload {
  return { ...event, id, type, data: { object: { ...event.data.object } } };
}

/** `items` in a seeded random order. */
export function shuffled<T>(items: T[], seed: number): T[] {
  const random = seededRandom(seed);
  const out = [...items];
  for (let index = out.length - 1; index > 0; index -= 1) {
    const other = Math.floor(random() * (index + 1));
    [out[index], out[other]] = [out[other], out[index]];
  }
  return out;
}

/** The webhook's URL in the functions emulator. */
export function webhookUrl(): string {
  return `${suite.functionsBaseUrl}/stripeWebhook`;
}
