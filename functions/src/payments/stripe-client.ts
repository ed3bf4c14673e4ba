/**
 * The official Stripe client, built from configuration on first use (the
 * library is loaded then, not at import: the webhook and listCreditPacks
 * never need it).
 *
 * `apiBase` points the client at another origin (a local stand-in speaking
 * Stripe's REST API); empty means Stripe itself.
 */
import type Stripe from "stripe";

export type StripeClient = Stripe;

/** Stripe's API version this code was written against; pinned so an account upgrade cannot change payloads under it. */
export const STRIPE_API_VERSION = "2026-11-18.endive";

export function stripeClient(secretKey: string, apiBase = ""): StripeClient {
  const StripeConstructor = require("stripe") as typeof import("stripe");
  const config: Stripe.StripeConfig = {
    apiVersion: STRIPE_API_VERSION,
    maxNetworkRetries: 2,
    timeout: 20_000,
    appInfo: { name: "metered-ai-functions" },
  };
  if (apiBase) {
    const url = new URL(apiBase);
    config.host = url.hostname;
    config.port = url.port || (url.protocol === "http:" ? 80 : 443);
    config.protocol = url.protocol === "http:" ? "http" : "https";
  }
  return new StripeConstructor(secretKey, config);
}

/** The webhook signature helpers; static, so verifying an event needs no API key. */
export function stripeWebhooks(): (typeof import("stripe"))["webhooks"] {
  return (require("stripe") as typeof import("stripe")).webhooks;
}
