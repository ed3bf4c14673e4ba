/**
 * One Stripe customer per user, stored on `users/{uid}.stripe_customer_id`.
 *
 * Race-safe without a lock: every creation for a user sends the same Stripe
 * idempotency key and parameters, so concurrent first purchases get the same
 * customer back from Stripe, and the first to store it wins (a transaction that
 * keeps a stored id). Stripe forgets idempotency keys after 24 h; by then the
 * stored id is what later purchases read.
 */
import type { Firestore } from "firebase-admin/firestore";
import { readAccount } from "../credits";
import { logs } from "../shared/logs";
import type { StripeClient } from "./stripe-client";

const USERS = "users";

export interface CustomerDeps {
  db: Firestore;
  stripe: StripeClient;
}

/** The user's Stripe customer id, created (once) if the user has none. */
export async function ensureCustomer(deps: CustomerDeps, uid: string): Promise<string> {
  const ref = deps.db.collection(USERS).doc(uid);
  const stored = (await ref.get()).get("stripe_customer_id") as unknown;
  if (typeof stored === "string" && stored) return stored;

  // Only parameters that never change for a user: the same key with other parameters is an error at Stripe.
  // Checkout asks the buyer for their email itself.
  const customer = await deps.stripe.customers.create(
    { metadata: { user_id: uid } },
    { idempotencyKey: `customer-${uid}` },
  );
  const outcome = await deps.db.runTransaction(async (tx) => {
    const current = (await tx.get(ref)).get("stripe_customer_id") as unknown;
    if (typeof current === "string" && current) return { id: current, stored: false };
    // A deleted user's document must not come back without its ledger state (the ledger re-opens the account
    // with a purchase); the customer is used for this checkout and stored on a later one.
    const account = await readAccount(tx, deps.db, uid);
    if (account.closed) return { id: customer.id, stored: false };
    tx.set(ref, { stripe_customer_id: customer.id }, { merge: true });
    return { id: customer.id, stored: true };
  });
  logs.stripeCustomerCreated(uid, outcome.id, outcome.stored);
  return outcome.id;
}
