/**
 * The payments domain's functions: declarations only; the work is in
 * packs.ts, checkout.ts, webhook.ts and auto-topup.ts. The Stripe secrets are attached only
 * to the function that needs each.
 */
import { onDocumentCreated } from "firebase-functions/v2/firestore";
import { onRequest } from "firebase-functions/v2/https";
import { firestore } from "../adapters/firebase";
import { mongoConfigured, mongoDb } from "../adapters/mongo";
import { redis } from "../adapters/redis";
import { STRIPE_API_BASE, STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET } from "../config";
import { callable } from "../shared/callable";
import { sendError } from "../shared/http";
import { logs } from "../shared/logs";
import { autoTopUpDisabledNotifier, chargeTopUp, setAutoTopUp as setAutoTopUpSettings } from "./auto-topup";
import { createCheckoutSession as createCheckout } from "./checkout";
import { loadCreditPacks } from "./packs";
import { CreateCheckoutInput, ListCreditPacksInput, SetAutoTopUpInput, type StripeEvent } from "./schemas";
import { stripeClient } from "./stripe-client";
import { applyStripeEvent, verifyStripeEvent, WebhookUnverified } from "./webhook";

/** The packs on sale (`config/credit_packs`), for any signed-in user. */
export const listCreditPacks = callable({
  name: "listCreditPacks",
  access: "user",
  schema: ListCreditPacksInput,
  handler: async () => ({ packs: await loadCreditPacks(firestore()) }),
});

export const createCheckoutSession = callable({
  name: "createCheckoutSession",
  access: "user",
  schema: CreateCheckoutInput,
  options: { secrets: [STRIPE_SECRET_KEY] },
  handler: (input, caller) =>
    createCheckout(
      { db: firestore(), stripe: stripeClient(STRIPE_SECRET_KEY.value(), STRIPE_API_BASE.value()) },
      caller.uid,
      input,
    ),
});

/**
 * HTTPS `stripeWebhook`, the endpoint registered in Stripe's dashboard.
 * 400 for anything whose signature does not verify (logged, nothing written);
 * 200 for an event applied now, applied before, or not ours; 5xx when
 * applying failed, so Stripe delivers it again.
 */
export const stripeWebhook = onRequest(
  { secrets: [STRIPE_WEBHOOK_SECRET], timeoutSeconds: 60 },
  async (request, response) => {
    if (request.method !== "POST") {
      response
        .set("Allow", "POST")
        .status(405)
        .json({ error: { status: "invalid-argument", message: "Use POST." } });
      return;
    }
    let event: StripeEvent;
    try {
      event = verifyStripeEvent(request.rawBody, request.get("stripe-signature"), STRIPE_WEBHOOK_SECRET.value());
    } catch (error) {
      if (error instanceof WebhookUnverified) logs.stripeWebhookRejected(error.message);
      sendError(response, error, "stripeWebhook");
      return;
    }
    try {
      const outcome = await applyStripeEvent(
        { db: firestore(), lock: redis(), notifyDisabled: notifyAutoTopUpDisabled() },
        event,
      );
      response.status(200).json({ received: true, outcome });
    } catch (error) {
      logs.unexpectedError("stripeWebhook", error);
      response.status(500).json({ error: { status: "internal", message: "The event could not be applied; retry." } });
    }
  },
);

/** Without MongoDB, auto top-up still turns itself off after three declines; nobody is told. */
function notifyAutoTopUpDisabled() {
  return mongoConfigured()
    ? autoTopUpDisabledNotifier(async () => ({ mongo: await mongoDb(), redis: redis() }))
    : undefined;
}

/** The caller's auto top-up settings; refused until a checkout saved a payment method. */
export const setAutoTopUp = callable({
  name: "setAutoTopUp",
  access: "user",
  schema: SetAutoTopUpInput,
  handler: (input, caller) => setAutoTopUpSettings({ db: firestore(), lock: redis() }, caller.uid, input),
});

/**
 * Charges a top-up the ledger created, off-session. Retried on failure: the
 * Stripe idempotency key (the top-up id) makes a retry get the same
 * PaymentIntent, and a settled top-up is left alone.
 */
export const chargeAutoTopUp = onDocumentCreated(
  { document: "topups/{topupId}", retry: true, timeoutSeconds: 60, secrets: [STRIPE_SECRET_KEY] },
  async (event) => {
    await chargeTopUp(
      {
        db: firestore(),
        lock: redis(),
        stripe: stripeClient(STRIPE_SECRET_KEY.value(), STRIPE_API_BASE.value()),
        notifyDisabled: notifyAutoTopUpDisabled(),
      },
      event.params.topupId,
    );
  },
);
