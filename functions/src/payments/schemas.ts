/**
 * Payments' schemas: the credit packs configuration and the callables'
 * inputs. All strict: an unknown field is an error, not silently dropped.
 */
import * as z from "zod";
import { documentId } from "../shared/ids";

/** Payment-API style idempotency key: 1–255 printable ASCII characters. */
const idempotencyKey = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without spaces");

/** Pack ids name packs in Stripe metadata and payment records: short, plain. */
export const PackId = documentId({
  max: 64,
  pattern: { regex: /^[A-Za-z0-9_-]+$/, message: "letters, digits, _ and -" },
});

/** One credit pack: `credits` for `amount` (the currency's minor unit, as Stripe counts it). */
export const CreditPack = z
  .object({
    pack_id: PackId,
    credits: z.number().int().positive().max(10_000_000),
    amount: z.number().int().positive().max(99_999_999),
    /** ISO 4217, lowercase as Stripe sends it. */
    currency: z.string().regex(/^[a-z]{3}$/, "a lowercase ISO 4217 code, e.g. usd"),
    /** The purchased credits' lot expires this many days after the grant (end of that UTC day); none: never. */
    expires_after_days: z.number().int().positive().max(3650).optional(),
    /** The purchased credits' lot priority (0–100, lower burns first); default 80, as every purchase. */
    priority: z.number().int().min(0).max(100).optional(),
  })
  .strict();

/** `config/credit_packs`: the packs on sale; pack ids are unique. */
export const CreditPacks = z
  .object({
    packs: z
      .array(CreditPack)
      .max(100)
      .superRefine((packs, ctx) => {
        const seen = new Set<string>();
        packs.forEach((pack, index) => {
          if (seen.has(pack.pack_id))
            ctx.addIssue({ code: "custom", path: [index, "pack_id"], message: "duplicate pack_id" });
          seen.add(pack.pack_id);
        });
      }),
  })
  .strict();

export const ListCreditPacksInput = z.object({}).strict();

/** Where Checkout sends the buyer back: an absolute http(s) URL. */
const returnUrl = z
  .string()
  .max(2048)
  .url()
  .refine((url) => /^https?:\/\//i.test(url), "must be an http(s) URL");

export const CreateCheckoutInput = z
  .object({
    pack_id: PackId,
    idempotency_key: idempotencyKey,
    success_url: returnUrl,
    cancel_url: returnUrl,
    /** Save the card for off-session charges (auto top-up). */
    save_payment_method: z.boolean().optional(),
  })
  .strict();

/**
 * setAutoTopUp: below `threshold` available credits, buy `pack_id`, at most `monthly_cap` credits a calendar
 * month (UTC). Whole credits; the cap must fit the pack at least once (checked against the pack).
 */
export const SetAutoTopUpInput = z
  .object({
    enabled: z.boolean(),
    threshold: z.number().int().min(1).max(10_000_000),
    pack_id: PackId,
    monthly_cap: z.number().int().min(1).max(100_000_000),
  })
  .strict();

/** A Stripe id or the expanded object carrying it. */
const expandable = z.union([z.string(), z.object({ id: z.string() }), z.null()]).optional();

/**
 * What the webhook reads of a verified Stripe event and of a Checkout session in it. Not strict: Stripe adds
 * fields freely, and those are not ours to refuse.
 */
export const StripeEvent = z.object({
  id: z.string().min(1).max(255),
  type: z.string(),
  created: z.number().int().optional(),
  data: z.object({ object: z.unknown() }),
});

export const CheckoutSession = z.object({
  id: z.string().min(1).max(255),
  payment_status: z.string(),
  amount_total: z.number().int().nullable(),
  currency: z.string().nullable(),
  payment_intent: expandable,
  /** What our checkout asked Stripe to echo (user_id, pack_id, payment_id): where to look, never proof. */
  metadata: z.record(z.string(), z.string()).nullable().optional(),
});

/** What `payment_intent.succeeded|payment_failed` carry that we read. */
export const PaymentIntent = z.object({
  id: z.string().min(1).max(255),
  object: z.literal("payment_intent"),
  amount: z.number().int().nonnegative(),
  currency: z.string(),
  customer: expandable,
  payment_method: expandable,
  setup_future_usage: z.string().nullable().optional(),
  metadata: z.record(z.string(), z.string()).optional(),
  last_payment_error: z
    .object({ code: z.string().optional(), decline_code: z.string().optional(), message: z.string().optional() })
    .nullable()
    .optional(),
});

/** What `charge.refunded` carries that we read: the cumulative amount refunded so far. */
export const Charge = z.object({
  id: z.string().min(1).max(255),
  object: z.literal("charge"),
  payment_intent: expandable,
  amount: z.number().int().nonnegative(),
  amount_refunded: z.number().int().nonnegative(),
  currency: z.string(),
});

/** What `charge.dispute.funds_withdrawn|funds_reinstated` carry that we read. */
export const Dispute = z.object({
  id: z.string().min(1).max(255),
  object: z.literal("dispute"),
  payment_intent: expandable,
  amount: z.number().int().nonnegative(),
  currency: z.string(),
});

export type CreditPack = z.infer<typeof CreditPack>;
export type CreditPacks = z.infer<typeof CreditPacks>;
export type ListCreditPacksInput = z.infer<typeof ListCreditPacksInput>;
export type CreateCheckoutInput = z.infer<typeof CreateCheckoutInput>;
export type SetAutoTopUpInput = z.infer<typeof SetAutoTopUpInput>;
export type StripeEvent = z.infer<typeof StripeEvent>;
export type PaymentIntent = z.infer<typeof PaymentIntent>;
export type CheckoutSession = z.infer<typeof CheckoutSession>;
export type Charge = z.infer<typeof Charge>;
export type Dispute = z.infer<typeof Dispute>;
