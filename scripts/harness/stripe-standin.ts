/**
 * A local stand-in for the part of Stripe's REST API the suite calls, for the
 * harness and the tests (Stripe is a remote paid API; nothing here reaches it).
 *
 * It speaks Stripe's protocol, so the official `stripe` library talks to it
 * unchanged when given its host, port and protocol (STRIPE_API_BASE):
 *
 *   POST /v1/customers               GET /v1/customers/{id}
 *   POST /v1/checkout/sessions       GET /v1/checkout/sessions/{id}
 *   POST /v1/refunds                 (`payment_intent` or `charge`, optional `amount`)
 *   POST /v1/payment_intents         (off-session with `confirm`: a saved card charged now)
 *   GET  /v1/payment_intents/{id}
 *
 * Requests are form-encoded with bracketed keys (`metadata[user_id]=…`,
 * `line_items[0][price_data][currency]=…`) and authenticated with
 * `Authorization: Bearer <secret key>`; errors have Stripe's shape
 * (`{error: {type, code?, message, param?}}`). An `Idempotency-Key` is honoured
 * as Stripe does: the same key with the same parameters answers the first
 * response again (`Idempotent-Replayed: true`), with other parameters
 * `400 idempotency_error`.
 *
 * Beyond the API it plays the buyer and Stripe's event sender:
 * - `complete(sessionId)` / `asyncResult(sessionId, …)` finish a checkout and
 *   return the events Stripe would send (`checkout.session.completed`, then
 *   `checkout.session.async_payment_succeeded|failed` for delayed methods);
 * - `sign(payload)` makes a `Stripe-Signature` header with the library's own
 *   test helper (`t=…,v1=HMAC-SHA256(secret, "t.payload")`), and `deliver`
 *   posts an event to the webhook signed (or as told);
 * - a paid checkout has a payment intent and a charge; `refund(pi, amount?)`
 *   (or `POST /v1/refunds`) refunds it and returns `charge.refunded` with the
 *   cumulative `amount_refunded`; `dispute(pi)` returns
 *   `charge.dispute.funds_withdrawn`, `reinstate(disputeId)`
 *   `charge.dispute.funds_reinstated` (a dispute won); `events()` lists every
 *   event produced, in order;
 * - a paid checkout also reports its payment intent (`payment_intent.succeeded`,
 *   with `customer`, `payment_method` and the `setup_future_usage` and
 *   `metadata` of `payment_intent_data`), as Stripe does; a payment intent
 *   created with `confirm` charges the customer's card at once: `succeeded`
 *   (`payment_intent.succeeded`), or, for a customer whose cards
 *   `declineCards(customer)` made decline, a 402 `card_error` carrying the
 *   payment intent (`payment_intent.payment_failed`);
 * - over HTTP for other processes (e2e tests, `npm start`):
 *   `POST /_standin/checkout/sessions/{id}/complete` `{payment_status?, deliver?}`,
 *   `POST /_standin/checkout/sessions/{id}/async` `{result, deliver?}`,
 *   `POST /_standin/payment_intents/{id}/refund` `{amount?, deliver?}`,
 *   `POST /_standin/payment_intents/{id}/dispute` `{deliver?}`, `POST /_standin/disputes/{id}/reinstate` `{deliver?}`,
 *   `POST /_standin/customers/{id}/decline` `{decline?}`,
 *   `GET /_standin/requests`, `GET /_standin/customers`, and `GET /checkout/{id}`, the "hosted page"
 *   a checkout URL points at, which pays and delivers the events.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import path from "node:path";

export interface StripeStandinOptions {
  port?: number;
  host?: string;
  /** The API key clients must send. */
  secretKey: string;
  /** The endpoint secret events are signed with. */
  webhookSecret: string;
  /** Where `deliver` (and the hosted page) posts events, unless told otherwise. */
  webhookUrl?: string;
}

/** One API request as the stand-in received it (for tests to assert on). */
export interface RecordedRequest {
  method: string;
  path: string;
  params: FormObject;
  idempotencyKey: string | null;
  replayed: boolean;
  status: number;
}

export interface StripeEventPayload {
  id: string;
  object: "event";
  type: string;
  api_version: string;
  created: number;
  livemode: false;
  pending_webhooks: number;
  request: { id: string | null; idempotency_key: string | null };
  data: { object: Record<string, unknown> };
}

export interface Delivery {
  status: number;
  body: unknown;
}

export interface StripeStandin {
  /** Origin for STRIPE_API_BASE, e.g. http://127.0.0.1:PORT. */
  url: string;
  secretKey: string;
  webhookSecret: string;
  /** The webhook events go to by default; settable after start (the functions' URL may be known later). */
  webhookUrl: string | undefined;
  requests(): RecordedRequest[];
  session(id: string): Record<string, unknown> | undefined;
  customers(): Array<Record<string, unknown>>;
  /** Finishes the checkout: `paid` (cards) or `unpaid` (a delayed method still processing). */
  complete(sessionId: string, options?: { paymentStatus?: "paid" | "unpaid" }): StripeEventPayload;
  /** The delayed method's outcome for a completed, unpaid session. */
  asyncResult(sessionId: string, result: "succeeded" | "failed"): StripeEventPayload;
  /** Refunds `amount` (default: all that is left) of a paid payment intent's charge; the event is `charge.refunded`. */
  refund(paymentIntent: string, amount?: number): { refund: Record<string, unknown>; event: StripeEventPayload };
  /** The payer disputes the charge and its funds are withdrawn: `charge.dispute.funds_withdrawn`. */
  dispute(paymentIntent: string): { dispute: Record<string, unknown>; event: StripeEventPayload };
  /** The dispute is won and its funds come back: `charge.dispute.funds_reinstated`. */
  reinstate(disputeId: string): StripeEventPayload;
  /** Makes every charge of `customer`'s cards decline (`insufficient_funds`) from now on, or stop declining. */
  declineCards(customer: string, decline?: boolean): void;
  /** Every payment intent, by id (checkouts' and those created through the API). */
  paymentIntents(): Array<Record<string, unknown>>;
  /** Every event produced so far (checkouts, refunds, disputes), oldest first. */
  events(): StripeEventPayload[];
  /** An event of `type` about `object`, as Stripe would send it. */
  event(type: string, object: Record<string, unknown>): StripeEventPayload;
  /** A `Stripe-Signature` header for `payload`, made by the library's test helper. */
  sign(payload: string, options?: { timestamp?: number; secret?: string }): string;
  /** POSTs `event` to the webhook, signed unless `signature` says otherwise (`null`: no header). */
  deliver(event: StripeEventPayload, options?: { url?: string; signature?: string | null }): Promise<Delivery>;
  close(): Promise<void>;
}

/** Stripe's API version the stand-in claims; events carry it. */
const API_VERSION = "2026-11-18.endive";

/**
 * An event as Stripe sends it, around a copy of `object`: the stand-in's own events, and those a test or the
 * bench makes up for objects the stand-in never saw.
 */
export function stripeEvent(
  id: string,
  type: string,
  object: Record<string, unknown>,
  created = Math.floor(Date.now() / 1000),
): StripeEventPayload {
  return {
    id,
    object: "event",
    type,
    api_version: API_VERSION,
    created,
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    data: { object: structuredClone(object) },
  };
}

type FormValue = string | FormObject | FormValue[];
export interface FormObject {
  [key: string]: FormValue;
}

class StripeApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly extra: { code?: string; param?: string } & Record<string, unknown> = {},
  ) {
    super(message);
  }

  toJSON(): { error: Record<string, unknown> } {
    return { error: { type: this.type, message: this.message, ...this.extra } };
  }
}

function missing(param: string): StripeApiError {
  return new StripeApiError(400, "invalid_request_error", `Missing required param: ${param}.`, {
    code: "parameter_missing",
    param,
  });
}

function invalid(param: string, message: string): StripeApiError {
  return new StripeApiError(400, "invalid_request_error", message, { code: "parameter_invalid", param });
}

function noSuch(kind: string, id: string, param = "id"): StripeApiError {
  return new StripeApiError(404, "invalid_request_error", `No such ${kind}: '${id}'`, {
    code: "resource_missing",
    param,
  });
}

function newId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString("hex")}`;
}

/** `a[b][0][c]=v` pairs into nested objects and arrays, as Stripe reads them. */
export function parseForm(body: string): FormObject {
  const root: FormObject = {};
  for (const [rawKey, value] of new URLSearchParams(body)) {
    const parts = rawKey.split(/[[\]]+/).filter((part) => part !== "");
    let node: FormObject | FormValue[] = root;
    parts.forEach((part, index) => {
      const last = index === parts.length - 1;
      const nextIsIndex = !last && /^\d+$/.test(parts[index + 1]);
      const container = node as Record<string, FormValue>;
      if (last) {
        container[part] = value;
        return;
      }
      container[part] ??= nextIsIndex ? [] : {};
      node = container[part] as FormObject | FormValue[];
    });
  }
  return root;
}

/** Parameters in a canonical order, so "the same parameters" does not depend on their order on the wire. */
function canonical(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
  return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonical(item)}`).join(",")}}`;
}

function asString(value: FormValue | undefined): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function asObject(value: FormValue | undefined, param: string): FormObject {
  if (value === undefined || value === "") return {};
  if (typeof value !== "object" || Array.isArray(value)) throw invalid(param, `Invalid hash: ${param}`);
  return value;
}

function asInteger(value: FormValue | undefined, param: string): number {
  const text = asString(value);
  if (text === undefined) throw missing(param);
  if (!/^-?\d+$/.test(text)) throw invalid(param, `Invalid integer: ${text}`);
  return Number(text);
}

/** Metadata: string values only, as Stripe stores them. */
function metadataOf(value: FormValue | undefined, param: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, item] of Object.entries(asObject(value, param))) {
    if (typeof item !== "string") throw invalid(`${param}[${key}]`, "Metadata values must be strings.");
    out[key] = item;
  }
  return out;
}

/** The library's webhook helpers, loaded from the functions package (the copy the functions verify with). */
function stripeWebhooks(): (typeof import("stripe"))["webhooks"] {
  const functionsDir = path.resolve(__dirname, "..", "..", "functions");
  const stripe = require(require.resolve("stripe", { paths: [functionsDir] })) as typeof import("stripe");
  return stripe.webhooks;
}

/** A `Stripe-Signature` header for `payload` under `secret`, made by the library's own test helper. */
export function signStripePayload(payload: string, secret: string, timestamp?: number): string {
  return stripeWebhooks().generateTestHeaderString({ payload, secret, timestamp });
}

/**
 * POSTs `event` to a webhook as Stripe does: the JSON body and its signature
 * under `secret`, unless `signature` is given (`null`: no header at all).
 */
export async function deliverEvent(
  url: string,
  event: StripeEventPayload,
  secret: string,
  signature?: string | null,
): Promise<Delivery> {
  const body = JSON.stringify(event);
  const header = signature === undefined ? signStripePayload(body, secret) : signature;
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...(header === null ? {} : { "stripe-signature": header }) },
    body,
    signal: AbortSignal.timeout(60_000),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text) as unknown;
  } catch {
    // Not JSON: keep the text.
  }
  return { status: response.status, body: parsed };
}

export async function startStripeStandin(options: StripeStandinOptions): Promise<StripeStandin> {
  const host = options.host ?? "127.0.0.1";
  const customers = new Map<string, Record<string, unknown>>();
  const sessions = new Map<string, Record<string, unknown>>();
  /** Charges by payment intent, created when a checkout is paid. */
  const charges = new Map<string, Record<string, unknown>>();
  const disputes = new Map<string, Record<string, unknown>>();
  const intents = new Map<string, Record<string, unknown>>();
  /** What each session asked of its payment intent (`payment_intent_data`). */
  const intentData = new Map<string, { setupFutureUsage: string | null; metadata: Record<string, string> }>();
  const declining = new Set<string>();
  const produced: StripeEventPayload[] = [];
  const idempotency = new Map<
    string,
    { method: string; path: string; params: string; status: number; body: unknown }
  >();
  const recorded: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  let origin = "";

  const now = () => Math.floor(Date.now() / 1000);

  function createCustomer(params: FormObject): Record<string, unknown> {
    const customer = {
      id: newId("cus"),
      object: "customer",
      created: now(),
      email: asString(params.email) ?? null,
      name: asString(params.name) ?? null,
      description: asString(params.description) ?? null,
      metadata: metadataOf(params.metadata, "metadata"),
      livemode: false,
    };
    customers.set(customer.id, customer);
    return customer;
  }

  function createSession(params: FormObject): Record<string, unknown> {
    const mode = asString(params.mode);
    if (!mode) throw missing("mode");
    if (mode !== "payment") throw invalid("mode", `The stand-in serves mode=payment only, not ${mode}.`);
    const successUrl = asString(params.success_url);
    if (!successUrl) throw missing("success_url");
    const customer = asString(params.customer);
    if (customer && !customers.has(customer)) throw noSuch("customer", customer, "customer");
    const items = params.line_items;
    if (!Array.isArray(items) || items.length === 0) throw missing("line_items");
    let amountTotal = 0;
    let currency: string | undefined;
    items.forEach((raw, index) => {
      const item = asObject(raw, `line_items[${index}]`);
      const priceData = asObject(item.price_data, `line_items[${index}][price_data]`);
      const itemCurrency = asString(priceData.currency);
      if (!itemCurrency) throw missing(`line_items[${index}][price_data][currency]`);
      if (currency && itemCurrency !== currency)
        throw invalid(`line_items[${index}][price_data][currency]`, "All line items must use the same currency.");
      currency = itemCurrency;
      const unitAmount = asInteger(priceData.unit_amount, `line_items[${index}][price_data][unit_amount]`);
      const quantity = asInteger(item.quantity, `line_items[${index}][quantity]`);
      if (unitAmount < 0 || quantity < 1) throw invalid(`line_items[${index}]`, "Invalid amount or quantity.");
      if (!asString(asObject(priceData.product_data, "product_data").name))
        throw missing(`line_items[${index}][price_data][product_data][name]`);
      amountTotal += unitAmount * quantity;
    });
    const paymentIntentData = asObject(params.payment_intent_data, "payment_intent_data");
    const setupFutureUsage = asString(paymentIntentData.setup_future_usage);
    if (setupFutureUsage && setupFutureUsage !== "off_session" && setupFutureUsage !== "on_session")
      throw invalid("payment_intent_data[setup_future_usage]", `Invalid setup_future_usage: ${setupFutureUsage}`);
    const id = newId("cs_test");
    const session: Record<string, unknown> = {
      id,
      object: "checkout.session",
      mode,
      status: "open",
      payment_status: "unpaid",
      amount_subtotal: amountTotal,
      amount_total: amountTotal,
      currency,
      customer: customer ?? null,
      client_reference_id: asString(params.client_reference_id) ?? null,
      metadata: metadataOf(params.metadata, "metadata"),
      payment_intent: null,
      success_url: successUrl,
      cancel_url: asString(params.cancel_url) ?? null,
      url: `${origin}/checkout/${id}`,
      created: now(),
      expires_at: now() + 24 * 3600,
      livemode: false,
    };
    sessions.set(id, session);
    intentData.set(id, {
      setupFutureUsage: setupFutureUsage ?? null,
      metadata: metadataOf(paymentIntentData.metadata, "payment_intent_data[metadata]"),
    });
    return session;
  }

  /** A payment intent object as Stripe returns it. */
  function intentObject(fields: {
    amount: number;
    currency: string;
    customer: string | null;
    paymentMethod: string | null;
    setupFutureUsage: string | null;
    metadata: Record<string, string>;
    status: string;
    offSession?: boolean;
  }): Record<string, unknown> {
    const intent = {
      id: newId("pi"),
      object: "payment_intent",
      amount: fields.amount,
      amount_received: fields.status === "succeeded" ? fields.amount : 0,
      currency: fields.currency,
      customer: fields.customer,
      payment_method: fields.paymentMethod,
      setup_future_usage: fields.setupFutureUsage,
      metadata: fields.metadata,
      status: fields.status,
      last_payment_error: null as Record<string, unknown> | null,
      created: now(),
      livemode: false,
    };
    intents.set(intent.id, intent);
    return intent;
  }

  /**
   * POST /v1/payment_intents. Only what auto top-up sends is served: a saved card (`customer`,
   * `payment_method`) charged now (`confirm`), usually `off_session`.
   */
  function createPaymentIntent(params: FormObject): Record<string, unknown> {
    const amount = asInteger(params.amount, "amount");
    if (amount < 1) throw invalid("amount", "Amount must be at least 1.");
    const currency = asString(params.currency);
    if (!currency) throw missing("currency");
    const customer = asString(params.customer);
    if (customer && !customers.has(customer)) throw noSuch("customer", customer, "customer");
    const paymentMethod = asString(params.payment_method);
    const confirm = asString(params.confirm) === "true";
    if (asString(params.off_session) === "true" && !confirm)
      throw invalid("off_session", "off_session can only be used with confirm=true.");
    if (confirm && !paymentMethod) throw missing("payment_method");
    const metadata = metadataOf(params.metadata, "metadata");
    const base = { amount, currency, customer: customer ?? null, paymentMethod: paymentMethod ?? null, metadata };
    if (!confirm) return intentObject({ ...base, setupFutureUsage: null, status: "requires_confirmation" });
    if (customer && declining.has(customer)) {
      const intent = intentObject({ ...base, setupFutureUsage: null, status: "requires_payment_method" });
      const error = {
        type: "card_error",
        code: "card_declined",
        decline_code: "insufficient_funds",
        message: "Your card has insufficient funds.",
      };
      intent.last_payment_error = error;
      send(record(event("payment_intent.payment_failed", intent)));
      throw new StripeApiError(402, "card_error", error.message, {
        code: error.code,
        decline_code: error.decline_code,
        payment_intent: structuredClone(intent),
      });
    }
    const intent = intentObject({ ...base, setupFutureUsage: null, status: "succeeded" });
    chargeForIntent(intent);
    send(record(event("payment_intent.succeeded", intent)));
    return intent;
  }

  /** The charge of a succeeded payment intent, made once. */
  function chargeForIntent(intent: Record<string, unknown>): void {
    const paymentIntent = String(intent.id);
    if (charges.has(paymentIntent)) return;
    charges.set(paymentIntent, {
      id: newId("ch"),
      object: "charge",
      amount: intent.amount,
      amount_refunded: 0,
      currency: intent.currency,
      customer: intent.customer,
      payment_intent: paymentIntent,
      paid: true,
      refunded: false,
      disputed: false,
      status: "succeeded",
      created: now(),
      livemode: false,
    });
  }

  /**
   * A paid checkout's payment succeeds: its charge (once), and `payment_intent.succeeded` carrying the card
   * and what `payment_intent_data` asked for, recorded after the session's own event.
   */
  function chargeFor(session: Record<string, unknown>): () => void {
    const paymentIntent = String(session.payment_intent);
    const intent = intents.get(paymentIntent);
    if (!intent || intent.status === "succeeded") return () => undefined;
    intent.status = "succeeded";
    intent.amount_received = intent.amount;
    intent.payment_method = newId("pm");
    chargeForIntent(intent);
    return () => void record(event("payment_intent.succeeded", intent));
  }

  /** The payment intent a completed checkout creates. */
  function intentForSession(session: Record<string, unknown>): string {
    const data = intentData.get(String(session.id));
    return String(
      intentObject({
        amount: Number(session.amount_total),
        currency: String(session.currency),
        customer: (session.customer as string | null) ?? null,
        paymentMethod: null,
        setupFutureUsage: data?.setupFutureUsage ?? null,
        metadata: data?.metadata ?? {},
        status: "processing",
      }).id,
    );
  }

  function chargeOf(paymentIntent: string | undefined, chargeId: string | undefined): Record<string, unknown> {
    if (paymentIntent) {
      const found = charges.get(paymentIntent);
      if (!found) throw noSuch("payment_intent", paymentIntent, "payment_intent");
      return found;
    }
    if (!chargeId) throw missing("payment_intent");
    const found = [...charges.values()].find((charge) => charge.id === chargeId);
    if (!found) throw noSuch("charge", chargeId, "charge");
    return found;
  }

  /** A refund, as `POST /v1/refunds` makes it: the charge's `amount_refunded` grows, and Stripe reports it. */
  function createRefund(params: FormObject): { refund: Record<string, unknown>; event: StripeEventPayload } {
    const charge = chargeOf(asString(params.payment_intent), asString(params.charge));
    const left = Number(charge.amount) - Number(charge.amount_refunded);
    const amount = params.amount === undefined ? left : asInteger(params.amount, "amount");
    if (left === 0)
      throw new StripeApiError(400, "invalid_request_error", `Charge ${String(charge.id)} has already been refunded.`, {
        code: "charge_already_refunded",
      });
    if (amount < 1 || amount > left)
      throw invalid("amount", `Refund amount (${amount}) is greater than unrefunded amount on charge (${left}).`);
    charge.amount_refunded = Number(charge.amount_refunded) + amount;
    charge.refunded = charge.amount_refunded === charge.amount;
    const refund = {
      id: newId("re"),
      object: "refund",
      amount,
      charge: charge.id,
      payment_intent: charge.payment_intent,
      currency: charge.currency,
      status: "succeeded",
      created: now(),
    };
    return { refund, event: record(event("charge.refunded", charge)) };
  }

  function refund(paymentIntent: string, amount?: number) {
    return createRefund(
      amount === undefined
        ? { payment_intent: paymentIntent }
        : { payment_intent: paymentIntent, amount: String(amount) },
    );
  }

  function dispute(paymentIntent: string): { dispute: Record<string, unknown>; event: StripeEventPayload } {
    const charge = chargeOf(paymentIntent, undefined);
    if (charge.disputed) throw invalid("charge", `Charge ${String(charge.id)} is already disputed.`);
    charge.disputed = true;
    const opened = {
      id: newId("dp"),
      object: "dispute",
      amount: charge.amount,
      currency: charge.currency,
      charge: charge.id,
      payment_intent: paymentIntent,
      reason: "fraudulent",
      status: "needs_response",
      balance_transactions: [],
      created: now(),
      livemode: false,
    };
    disputes.set(opened.id, opened);
    return { dispute: opened, event: record(event("charge.dispute.funds_withdrawn", opened)) };
  }

  function reinstate(disputeId: string): StripeEventPayload {
    const found = disputes.get(disputeId);
    if (!found) throw noSuch("dispute", disputeId);
    if (found.status === "won") throw invalid("dispute", `Dispute ${disputeId} is already won.`);
    found.status = "won";
    return record(event("charge.dispute.funds_reinstated", found));
  }

  function declineCards(customer: string, decline = true): void {
    if (!customers.has(customer)) throw noSuch("customer", customer);
    if (decline) declining.add(customer);
    else declining.delete(customer);
  }

  /**
   * As Stripe does for what happens without a buyer (an off-session charge): the event is sent to the webhook
   * on its own, after the API's answer, when the stand-in has a webhook URL (the harness's; tests in process
   * deliver events themselves).
   */
  function send(payload: StripeEventPayload): void {
    if (!standin.webhookUrl) return;
    setImmediate(() => {
      deliver(payload).catch(() => undefined);
    });
  }

  function record(payload: StripeEventPayload): StripeEventPayload {
    produced.push(payload);
    return payload;
  }

  /** Routes one authenticated API call. */
  function route(method: string, pathname: string, params: FormObject): { status: number; body: unknown } {
    if (method === "POST" && pathname === "/v1/customers") return { status: 200, body: createCustomer(params) };
    if (method === "POST" && pathname === "/v1/refunds") return { status: 200, body: createRefund(params).refund };
    if (method === "POST" && pathname === "/v1/checkout/sessions") return { status: 200, body: createSession(params) };
    if (method === "POST" && pathname === "/v1/payment_intents")
      return { status: 200, body: createPaymentIntent(params) };
    const intent = /^\/v1\/payment_intents\/([^/]+)$/.exec(pathname);
    if (method === "GET" && intent) {
      const found = intents.get(decodeURIComponent(intent[1]));
      if (!found) throw noSuch("payment_intent", intent[1]);
      return { status: 200, body: found };
    }
    const customer = /^\/v1\/customers\/([^/]+)$/.exec(pathname);
    if (method === "GET" && customer) {
      const found = customers.get(decodeURIComponent(customer[1]));
      if (!found) throw noSuch("customer", customer[1]);
      return { status: 200, body: found };
    }
    const session = /^\/v1\/checkout\/sessions\/([^/]+)$/.exec(pathname);
    if (method === "GET" && session) {
      const found = sessions.get(decodeURIComponent(session[1]));
      if (!found) throw noSuch("checkout.session", session[1]);
      return { status: 200, body: found };
    }
    throw new StripeApiError(404, "invalid_request_error", `Unrecognized request URL (${method}: ${pathname}).`);
  }

  function api(
    request: IncomingMessage,
    pathname: string,
    body: string,
  ): { status: number; body: unknown; replayed: boolean } {
    const method = request.method ?? "GET";
    const auth = request.headers.authorization ?? "";
    if (auth !== `Bearer ${options.secretKey}`)
      throw new StripeApiError(401, "invalid_request_error", "Invalid API Key provided.");
    const params =
      method === "GET" ? parseForm(new URL(request.url ?? "/", "http://x").search.slice(1)) : parseForm(body);
    const key = request.headers["idempotency-key"];
    const idempotencyKey = typeof key === "string" && key !== "" ? key : null;
    if (method !== "POST" || !idempotencyKey) return { ...route(method, pathname, params), replayed: false };
    const fingerprint = canonical(params);
    const first = idempotency.get(idempotencyKey);
    if (first) {
      if (first.method !== method || first.path !== pathname || first.params !== fingerprint) {
        throw new StripeApiError(
          400,
          "idempotency_error",
          `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
        );
      }
      return { status: first.status, body: first.body, replayed: true };
    }
    // Like Stripe, a request refused for its parameters (4xx) is saved with its key too.
    let result: { status: number; body: unknown };
    try {
      result = route(method, pathname, params);
    } catch (error) {
      if (!(error instanceof StripeApiError)) throw error;
      result = { status: error.status, body: error.toJSON() };
    }
    idempotency.set(idempotencyKey, { method, path: pathname, params: fingerprint, ...result });
    return { ...result, replayed: false };
  }

  function event(type: string, object: Record<string, unknown>): StripeEventPayload {
    return stripeEvent(newId("evt"), type, object, now());
  }

  function sessionFor(id: string): Record<string, unknown> {
    const found = sessions.get(id);
    if (!found) throw noSuch("checkout.session", id);
    return found;
  }

  function complete(
    sessionId: string,
    completeOptions: { paymentStatus?: "paid" | "unpaid" } = {},
  ): StripeEventPayload {
    const session = sessionFor(sessionId);
    if (session.status !== "open")
      throw invalid("session", `Checkout session ${sessionId} is ${String(session.status)}.`);
    session.status = "complete";
    session.payment_status = completeOptions.paymentStatus ?? "paid";
    session.payment_intent = intentForSession(session);
    const paid = session.payment_status === "paid" ? chargeFor(session) : () => undefined;
    const completed = record(event("checkout.session.completed", session));
    paid();
    return completed;
  }

  function asyncResult(sessionId: string, result: "succeeded" | "failed"): StripeEventPayload {
    const session = sessionFor(sessionId);
    if (session.status !== "complete" || session.payment_status !== "unpaid")
      throw invalid("session", `Checkout session ${sessionId} has no payment in progress.`);
    let paid = () => undefined as void;
    if (result === "succeeded") {
      session.payment_status = "paid";
      paid = chargeFor(session);
    }
    const reported = record(event(`checkout.session.async_payment_${result}`, session));
    paid();
    return reported;
  }

  const sign = (payload: string, signOptions: { timestamp?: number; secret?: string } = {}) =>
    signStripePayload(payload, signOptions.secret ?? options.webhookSecret, signOptions.timestamp);

  function deliver(payload: StripeEventPayload, deliverOptions: { url?: string; signature?: string | null } = {}) {
    const url = deliverOptions.url ?? standin.webhookUrl;
    if (!url) throw new Error("the Stripe stand-in has no webhook URL to deliver to");
    return deliverEvent(url, payload, options.webhookSecret, deliverOptions.signature);
  }

  /** The control endpoints (`/_standin/…`) and the hosted page (`/checkout/{id}`). */
  async function control(method: string, pathname: string, body: string): Promise<{ status: number; body: unknown }> {
    if (method === "GET" && pathname === "/_standin/requests") return { status: 200, body: recorded };
    if (method === "GET" && pathname === "/_standin/customers") return { status: 200, body: [...customers.values()] };
    const hosted = /^\/checkout\/([^/]+)$/.exec(pathname);
    if (method === "GET" && hosted) {
      const completed = complete(decodeURIComponent(hosted[1]));
      const delivery = standin.webhookUrl ? await deliver(completed) : undefined;
      // Then the payment intent's own event (it saves the card when the checkout asked to).
      const paid = produced.find(
        (made) =>
          made.type === "payment_intent.succeeded" && made.data.object.id === completed.data.object.payment_intent,
      );
      if (paid && standin.webhookUrl) await deliver(paid);
      return { status: 200, body: { paid: true, session_id: hosted[1], webhook: delivery ?? null } };
    }
    const action = /^\/_standin\/checkout\/sessions\/([^/]+)\/(complete|async)$/.exec(pathname);
    if (method === "POST" && action) {
      const input = (body ? JSON.parse(body) : {}) as {
        payment_status?: "paid" | "unpaid";
        result?: "succeeded" | "failed";
        deliver?: boolean;
      };
      const id = decodeURIComponent(action[1]);
      const produced =
        action[2] === "complete"
          ? complete(id, { paymentStatus: input.payment_status })
          : asyncResult(id, input.result ?? "succeeded");
      const delivery = input.deliver ? await deliver(produced) : undefined;
      return { status: 200, body: { event: produced, delivery: delivery ?? null } };
    }
    const decline = /^\/_standin\/customers\/([^/]+)\/decline$/.exec(pathname);
    if (method === "POST" && decline) {
      const input = (body ? JSON.parse(body) : {}) as { decline?: boolean };
      declineCards(decodeURIComponent(decline[1]), input.decline ?? true);
      return { status: 200, body: { declining: [...declining] } };
    }
    const money = /^\/_standin\/(payment_intents|disputes)\/([^/]+)\/(refund|dispute|reinstate)$/.exec(pathname);
    if (method === "POST" && money) {
      const input = (body ? JSON.parse(body) : {}) as { amount?: number; deliver?: boolean };
      const id = decodeURIComponent(money[2]);
      const made =
        money[3] === "refund" && money[1] === "payment_intents"
          ? refund(id, input.amount).event
          : money[3] === "dispute" && money[1] === "payment_intents"
            ? dispute(id).event
            : money[3] === "reinstate" && money[1] === "disputes"
              ? reinstate(id)
              : undefined;
      if (!made)
        throw new StripeApiError(404, "invalid_request_error", `Unrecognized request URL (${method}: ${pathname}).`);
      const delivery = input.deliver ? await deliver(made) : undefined;
      return { status: 200, body: { event: made, delivery: delivery ?? null } };
    }
    throw new StripeApiError(404, "invalid_request_error", `Unrecognized request URL (${method}: ${pathname}).`);
  }

  const answer = (response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    response.writeHead(status, { "content-type": "application/json", "request-id": newId("req"), ...headers });
    response.end(JSON.stringify(body));
  };

  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const method = request.method ?? "GET";
      const pathname = new URL(request.url ?? "/", "http://x").pathname;
      if (!pathname.startsWith("/v1/")) {
        control(method, pathname, body)
          .then((result) => answer(response, result.status, result.body))
          .catch((error: unknown) =>
            error instanceof StripeApiError
              ? answer(response, error.status, error.toJSON())
              : answer(response, 500, { error: { type: "api_error", message: String(error) } }),
          );
        return;
      }
      // Handled synchronously: two requests with one idempotency key never interleave.
      let result: { status: number; body: unknown; replayed: boolean };
      try {
        result = api(request, pathname, body);
      } catch (error) {
        result =
          error instanceof StripeApiError
            ? { status: error.status, body: error.toJSON(), replayed: false }
            : { status: 500, body: { error: { type: "api_error", message: String(error) } }, replayed: false };
      }
      const key = request.headers["idempotency-key"];
      recorded.push({
        method,
        path: pathname,
        params: method === "POST" ? parseForm(body) : {},
        idempotencyKey: typeof key === "string" ? key : null,
        replayed: result.replayed,
        status: result.status,
      });
      answer(response, result.status, result.body, result.replayed ? { "idempotent-replayed": "true" } : {});
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, resolve);
  });
  origin = `http://${host}:${(server.address() as AddressInfo).port}`;

  const standin: StripeStandin = {
    url: origin,
    secretKey: options.secretKey,
    webhookSecret: options.webhookSecret,
    webhookUrl: options.webhookUrl,
    requests: () => [...recorded],
    session: (id) => sessions.get(id),
    customers: () => [...customers.values()],
    complete,
    asyncResult,
    refund,
    dispute,
    reinstate,
    declineCards,
    paymentIntents: () => [...intents.values()],
    events: () => [...produced],
    event,
    sign,
    deliver,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return standin;
}
